"""Rows for tests, built in one place: a batch as the mirror stores it, its results, an upload.

Each builder gives sensible defaults and takes any model field as a keyword, so a test names only
what it is about. Ids are numbered per run, so two builders never collide.
"""

import itertools
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from batches import totals
from batches.models import Batch, Result, Submission, Workspace

_numbers = itertools.count(1)


def batch(workspace: Workspace, hours_ago: float = 0, **fields: Any) -> Batch:
    """An ended batch (3 succeeded, 1 errored) that ended `hours_ago`, an hour after it was
    created, unless `fields` say otherwise. `api_id` is unique unless given."""
    number = next(_numbers)
    ended_at = timezone.now() - timedelta(hours=hours_ago)
    values = {
        "api_id": f"msgbatch_{number:06d}",
        "processing_status": "ended",
        "succeeded": 3,
        "errored": 1,
        "created_at": ended_at - timedelta(hours=1),
        "expires_at": ended_at + timedelta(hours=23),
        "ended_at": ended_at,
        **fields,
    }
    return Batch.objects.create(workspace=workspace, **values)


def running_batch(
    workspace: Workspace, processing: int = 4, minutes_ago: float = 3, **fields: Any
) -> Batch:
    """An in-progress batch with `processing` requests, created `minutes_ago`."""
    created_at = timezone.now() - timedelta(minutes=minutes_ago)
    values = {
        "processing_status": "in_progress",
        "processing": processing,
        "succeeded": 0,
        "errored": 0,
        "created_at": created_at,
        "expires_at": created_at + timedelta(hours=24),
        "ended_at": None,
        **fields,
    }
    return batch(workspace, **values)


def ended_news(workspace: Workspace, ended_ago: timedelta, **fields: Any) -> Batch:
    """An ended batch the dashboard saw end (first seen when it ended): news for its notices."""
    ended_at = timezone.now() - ended_ago
    made = batch(workspace, succeeded=2, errored=0, ended_at=ended_at,
                 created_at=ended_at - timedelta(hours=1), **fields)  # fmt: skip
    Batch.objects.filter(pk=made.pk).update(first_seen_at=ended_at)
    made.refresh_from_db()
    return made


def succeeded(batch: Batch | None, custom_id: str, **fields: Any) -> Result:
    text = fields.pop("text", f"Answer to {custom_id}")
    values = {
        "result_type": "succeeded",
        "stop_reason": "end_turn",
        "model": "claude-haiku-4-5",
        "input_tokens": 100,
        "output_tokens": 50,
        "content": [{"type": "text", "text": text}],
        "answer_text": text,
        **fields,
    }
    return Result(batch=batch, custom_id=custom_id, **values)


def errored(batch: Batch | None, custom_id: str, **fields: Any) -> Result:
    values = {
        "result_type": "errored",
        "error_type": "invalid_request_error",
        "error_message": f"model: bad model in {custom_id}",
        **fields,
    }
    return Result(batch=batch, custom_id=custom_id, **values)


def with_results(batch: Batch, count: int = 4, *, every_errored: int = 4) -> Batch:
    """`count` stored results (`req-0000`...), every `every_errored`-th one errored, stored as
    ingestion stores them: complete, with totals."""
    rows = [
        errored(batch, f"req-{n:04d}")
        if n % every_errored == every_errored - 1
        else succeeded(batch, f"req-{n:04d}", text=f"Answer <b>{n}</b>")
        for n in range(count)
    ]
    Result.objects.bulk_create(rows, batch_size=2000)
    Batch.objects.filter(pk=batch.pk).update(
        results_ingested=count, results_ingested_at=timezone.now()
    )
    totals.store_totals(Batch.objects.filter(pk=batch.pk))
    batch.refresh_from_db()
    return batch


def submission(workspace: Workspace, user: User, **fields: Any) -> Submission:
    """An upload record (no file) in the state `fields` give; JSONL, checking by default."""
    values = {
        "key": uuid.uuid4(),
        "source_filename": "requests.jsonl",
        "source_format": Submission.Format.JSONL,
        "state": Submission.State.CHECKING,
        **fields,
    }
    return Submission.objects.create(workspace=workspace, created_by=user, **values)
