"""Try first: a few requests of a checked upload sent on their own through the Messages API
(`POST /v1/messages`, not as a batch), so a prompt mistake shows in seconds, not after a day.

1. The check, once its requests are indexed, keeps the first MAX_TRIES requests with their most
   expensive outcome at the standard price (`intake.job.first_requests`), which the page states
   before anything is sent.
2. `start(...)` makes the Trial rows within the workspace's daily cap (a lock on the workspace's
   row makes two starts at once count each other); the caller enqueues `tasks.send_trial` for
   each after the commit.
3. `send(trial_pk)` (the task) reads the request from its batch's create body, sends it with the
   upload's beta features, and stores the checked answer, or the API's error as it gave it.
"""

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import orjson
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from batches.client import ApiClient, ApiError
from batches.ingestion import NotAResult, result_fields
from batches.intake.job import MAX_TRIES, try_bound
from batches.models import BatchRequest, Submission, Trial, Workspace
from batches.pricing import USAGE_FIELDS, usage_cost
from batches.text import holds_nul, without_nul

logger = logging.getLogger(__name__)
DAY = timedelta(hours=24)
# More than any model answers: a request asking for more is a mistake to fix before trying.
MAX_TRY_TOKENS = 1_000_000


class TryRefused(Exception):
    """Why these requests cannot be tried now; the message says what to do."""


def cost_of_first(submission: Submission, count: int) -> Decimal | None:
    """What trying the first `count` requests could cost at most (None: a model is unpriced)."""
    bounds = [item["cost_at_most"] for item in submission.first_requests[:count]]
    if not bounds or None in bounds:
        return None
    return sum((Decimal(bound) for bound in bounds), Decimal(0))


def tries_left(workspace: Workspace, now: datetime | None = None) -> int:
    now = now or timezone.now()
    used = Trial.objects.filter(workspace=workspace, created_at__gt=now - DAY).count()
    return max(0, workspace.daily_tries - used)


def start(
    submission: Submission,
    user: AbstractBaseUser | None,
    *,
    count: int = 0,
    custom_ids: Collection[str] = (),
) -> list[Trial]:
    """Trial rows for the first `count` requests, or for these custom_ids, within the daily cap.
    Raises TryRefused, with what to do, when they cannot be tried."""
    if not submission.requests_indexed_at or not submission.request_count:
        raise TryRefused("This upload has no checked requests to try yet.")
    with transaction.atomic():
        workspace = Workspace.objects.select_for_update().get(pk=submission.workspace_id)
        requests = BatchRequest.objects.filter(submission=submission)
        if custom_ids:
            rows = list(requests.filter(custom_id__in=custom_ids).order_by("line"))
            found = {row.custom_id for row in rows}
            missing = [custom_id for custom_id in custom_ids if custom_id not in found]
            if missing:
                raise TryRefused(
                    f"No valid request of this upload has the custom_id {missing[0]!r}: pick one "
                    "from the file (a line with problems cannot be tried)."
                )
        else:
            rows = list(requests.order_by("line")[: max(1, min(count, MAX_TRIES))])
        left = tries_left(workspace)
        if len(rows) > left:
            raise TryRefused(
                f"This workspace allows {workspace.daily_tries} tries in 24 hours and has {left} "
                "left: try fewer, or ask an admin to raise the limit in the workspace's settings."
            )
        trials = []
        now = timezone.now()  # one moment for the group: the page lists it in line order
        for row in rows:
            model, max_tokens, bound = try_bound(row.load()["params"])
            if max_tokens > MAX_TRY_TOKENS:
                raise TryRefused(
                    f"{row.custom_id} asks for max_tokens {max_tokens:,}, more than any model "
                    "answers: fix the request before trying it."
                )
            trials.append(
                Trial.objects.create(
                    submission=submission,
                    workspace=workspace,
                    # A login is a row of the user model (AUTH_USER_MODEL), as the field says.
                    created_by=cast(User | None, user),
                    created_at=now,
                    custom_id=row.custom_id,
                    line=row.line,
                    model=model,
                    max_tokens=max_tokens,
                    cost_at_most=bound,
                )
            )
    return trials


def send(trial_pk: int, *, client: ApiClient | None = None) -> str:
    """The task's body: one request through the Messages API, its answer or error stored once.

    The trial is marked sent before the call, with a conditional update: a task run again after
    its worker died finds it marked and does not send it twice (the API may have answered, and
    billed, the first time). Whatever goes wrong ends the trial failed, never left sending."""
    trial = (
        Trial.objects.select_related("submission__workspace")
        .filter(pk=trial_pk, state=Trial.State.SENDING)
        .first()
    )
    if trial is None:
        return "already done"
    if not Trial.objects.filter(pk=trial.pk, sent_at__isnull=True).update(sent_at=timezone.now()):
        return _finish(
            trial,
            state=Trial.State.FAILED,
            error_type="not_sent_again",
            error_message="The worker sending this request stopped after it was sent, so the API "
            "may have answered (and billed) it; it was not sent a second time. Try it again to "
            "see the answer.",
        )
    submission = trial.submission
    try:
        row = BatchRequest.objects.get(submission=submission, custom_id=trial.custom_id)
        body = orjson.dumps(row.load()["params"])
        with ApiClient.using(
            submission.workspace, client, timeout=settings.TRY_TIMEOUT_SECONDS
        ) as api:
            message = api.create_message(body, betas=submission.betas)
        fields = result_fields({"custom_id": trial.custom_id,
                                "result": {"type": "succeeded", "message": message}})  # fmt: skip
    except ApiError as error:
        return _finish(
            trial,
            state=Trial.State.FAILED,
            status_code=error.status,
            error_type=_text(error.error_type or "api_error", 64),
            error_message=_text(error.message, 2000),
            request_id=_text(error.request_id, 100),
        )
    except NotAResult as error:
        return _finish(
            trial,
            state=Trial.State.FAILED,
            error_type="invalid_response",
            error_message=_text(f"The API's answer could not be read: {error}.", 2000),
        )
    except BatchRequest.DoesNotExist:
        return _finish(
            trial,
            state=Trial.State.FAILED,
            error_type="not_stored",
            error_message="The request is no longer stored here (the upload was checked again): "
            "try it again.",
        )
    except Exception as error:  # storage, the time limit: the page must not wait for ever
        logger.exception("Trying %s failed", trial.custom_id)
        return _finish(
            trial,
            state=Trial.State.FAILED,
            error_type="not_sent",
            error_message=f"The dashboard could not try this request ({type(error).__name__}): "
            "try it again.",
        )
    content = fields["content"]
    if holds_nul(content):  # no database keeps a NUL in text
        content = without_nul(content)
    usage = {name: fields[name] for name in USAGE_FIELDS}
    return _finish(
        trial,
        state=Trial.State.ANSWERED,
        content=content,
        stop_reason=fields["stop_reason"],
        answer_model=fields["model"],
        cost=usage_cost(fields["model"] or trial.model, usage, batch=False),
        **usage,
    )


def _text(value: object, limit: int) -> str:
    """A string from an error, whatever the API (or a proxy before it) put there: text, no NUL,
    at most `limit` characters."""
    return str(value or "").replace("\x00", "")[:limit]


def _finish(trial: Trial, **fields: Any) -> str:
    """Store the outcome, once: a second run of the task finds the trial done."""
    Trial.objects.filter(pk=trial.pk, state=Trial.State.SENDING).update(
        answered_at=timezone.now(), **fields
    )
    return str(fields["state"])
