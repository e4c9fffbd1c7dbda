"""What a person can do to a batch from the dashboard: cancel, delete, refresh now, resubmit.

Cancel, delete and refresh call the API, which can be slow or down, so a click never waits for
it: `request_action` checks that the action applies (else `ActionRefused`, with a sentence for
the person), records it on the batch with a conditional update (one action at a time), and the
caller enqueues `tasks.run_batch_action` after the commit. The batch page shows the action
pending until `run_action` has the API's answer, and then the new state or the API's refusal.
Resubmitting calls no API: it prepares a new upload at once.
"""

import logging
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.db import transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from batches import downloads, ingestion, mirror
from batches.client import ApiClient, ApiError
from batches.models import Batch, BatchRequest, Result, Submission, SubmissionPart

logger = logging.getLogger(__name__)

# A person is looking at the page: two attempts, ten seconds each.
ACTION_ATTEMPTS = 2
ACTION_TIMEOUT = 10.0

RESUBMIT_KINDS = {
    "retryable": "Errored with a temporary error (overloaded, rate limited, API error)",
    "invalid": "Errored as invalid requests (need a fix first)",
    "expired": "Expired",
    "canceled": "Canceled",
}
INVALID_ERROR = "invalid_request_error"
Action = Batch.Action
# What each action asks of the API, for the sentence that reports its refusal (keyed by str: an
# action comes back from the database as a plain string).
REFUSED_VERBS: dict[str, str] = {
    Action.CANCEL: "cancel the batch",
    Action.DELETE: "delete the batch",
    Action.REMOVE: "delete the batch",
    Action.REFRESH: "show the batch",
}


class ActionRefused(Exception):
    """The action does not apply to the batch as it is; the message says why."""


def _refusal(batch: Batch, action: str) -> str:
    """Why `action` does not apply to the batch now; empty when it does."""
    if batch.pending_action:
        return "Another action on this batch is under way; wait for it to finish."
    if action == Action.CANCEL:
        if batch.gone_at:
            return "This batch was deleted from the API; there is nothing to cancel."
        if batch.processing_status != Batch.Status.IN_PROGRESS:
            return "Only a batch in progress can be canceled."
    elif action in (Action.DELETE, Action.REMOVE):
        if batch.is_active and not batch.gone_at:
            return "A batch must end before it can be deleted: cancel it first."
    elif action == Action.REFRESH and batch.gone_at:
        return "This batch was deleted from the API; the stored copy stays as it is."
    return ""


def offered(batch: Batch, can: dict[str, bool]) -> dict[str, bool]:
    """What the batch page offers a person whose abilities are `can`: each action their role
    allows that applies to the batch now, by the same rule `request_action` enforces."""
    return {
        "cancel": can["submit"] and not _refusal(batch, Action.CANCEL),
        "delete": can["delete"] and not _refusal(batch, Action.DELETE),
        "refresh": can["submit"] and not _refusal(batch, Action.REFRESH),
    }


def request_action(batch: Batch, action: str, user: AbstractBaseUser | None = None) -> None:
    """Record `action` as pending on the batch, once, and who asked for a cancel or a delete;
    the caller enqueues the task."""
    reason = _refusal(batch, action)
    if reason:
        raise ActionRefused(reason)
    now = timezone.now()
    asked_by = {}
    if user is not None and action == Action.CANCEL:
        asked_by = {"canceled_by": user}
    elif user is not None and action in (Action.DELETE, Action.REMOVE):
        asked_by = {"deleted_by": user}
    if not Batch.objects.filter(pk=batch.pk, pending_action="").update(
        pending_action=action, pending_action_at=now, action_error="", **asked_by
    ):
        raise ActionRefused("Another action on this batch is under way; wait for it to finish.")
    batch.pending_action, batch.pending_action_at, batch.action_error = action, now, ""
    for name, person in asked_by.items():
        setattr(batch, name, person)


@dataclass
class ActionOutcome:
    action: str = ""
    error: str = ""
    removed: bool = False
    fetch_results: bool = False  # the batch ended and its results are to be fetched now


def run_action(batch_pk: int, *, client: ApiClient | None = None) -> ActionOutcome:
    """The task's body: carry out the batch's pending action with a bounded API call."""
    batch = Batch.objects.select_related("workspace").filter(pk=batch_pk).first()
    if batch is None or not batch.pending_action:
        return ActionOutcome()
    outcome = ActionOutcome(action=batch.pending_action)
    pending = Batch.objects.filter(pk=batch.pk, pending_action=batch.pending_action,
                                   pending_action_at=batch.pending_action_at)  # fmt: skip
    try:
        with ApiClient.using(
            batch.workspace, client, max_attempts=ACTION_ATTEMPTS, timeout=ACTION_TIMEOUT
        ) as api:
            if outcome.action == Action.CANCEL:
                mirror.upsert_batches(batch.workspace, [api.cancel_batch(batch.api_id)],
                                      timezone.now())  # fmt: skip
            elif outcome.action in (Action.DELETE, Action.REMOVE):
                if not batch.gone_at:
                    try:
                        api.delete_batch(batch.api_id)
                    except ApiError as error:
                        if not error.is_not_found:
                            raise
                if outcome.action == Action.REMOVE:
                    _remove_local_copy(batch)
                    outcome.removed = True
                    return outcome
                Batch.objects.filter(pk=batch.pk).update(gone_at=timezone.now(), next_poll_at=None)
            elif outcome.action == Action.REFRESH:
                mirror.upsert_batches(batch.workspace, [api.retrieve_batch(batch.api_id)],
                                      timezone.now())  # fmt: skip
                batch.refresh_from_db()
                if batch.is_ended and not batch.results_complete and not batch.archived_at:
                    # Lift the backoff and the attempt limit; an ingestion that runs now keeps
                    # its claim.
                    ingestion.reset_backoff(batch)
                    outcome.fetch_results = True
    except ApiError as error:
        verb = REFUSED_VERBS[outcome.action]
        outcome.error = f"The API refused to {verb}: {error}"
        logger.info("%s of %s failed: %s", outcome.action, batch.api_id, error)
    except Exception as error:
        # Not the API's refusal but a fault of ours: the page says so instead of waiting forever.
        logger.exception("%s of %s failed", outcome.action, batch.api_id)
        outcome.error = f"The {outcome.action} stopped with an unexpected error ({error!r})."
    pending.update(pending_action="", pending_action_at=None, action_error=outcome.error)
    return outcome


def _remove_local_copy(batch: Batch) -> None:
    if batch.results_file:
        batch.results_file.delete(save=False)
    batch.delete()


def longest_action() -> timedelta:
    """The longest one action's task can take: each attempt may wait its turn at the key's rate
    limit and then for its answer, with a backoff between attempts. An action pending longer
    than this (and a margin) has lost its task; one pending less may still be running, and a
    second task must not be sent then (nothing else holds it off)."""
    attempt = settings.API_RATE_LIMIT_MAX_WAIT_SECONDS + ACTION_TIMEOUT
    backoff = settings.API_RETRY_MAX_WAIT_SECONDS * (ACTION_ATTEMPTS - 1)
    return timedelta(seconds=ACTION_ATTEMPTS * attempt + backoff + 30)


def stalled_actions(now: datetime) -> list[int]:
    """Actions whose task was lost (a worker killed, a message dropped): still pending longer
    than any action's task can run. The beat hands them out again."""
    return list(
        Batch.objects.exclude(pending_action="")
        .filter(pending_action_at__lt=now - longest_action())
        .values_list("pk", flat=True)
    )


# Resubmit ---------------------------------------------------------------------------------------


def resubmit_counts(batch: Batch) -> dict[str, int]:
    """How many results of each resubmittable kind the batch has (one query)."""
    from django.db.models import Count

    rows = (
        Result.objects.filter(batch=batch)
        .exclude(result_type=Result.Type.SUCCEEDED)
        .aggregate(
            retryable=Count("pk", filter=Q(result_type="errored") & ~Q(error_type=INVALID_ERROR)),
            invalid=Count("pk", filter=Q(result_type="errored", error_type=INVALID_ERROR)),
            expired=Count("pk", filter=Q(result_type="expired")),
            canceled=Count("pk", filter=Q(result_type="canceled")),
        )
    )
    return {kind: rows[kind] for kind in RESUBMIT_KINDS}


def _kinds_filter(kinds: Collection[str]) -> Q:
    query = Q(pk__in=[])
    if "retryable" in kinds:
        query |= Q(result_type="errored") & ~Q(error_type=INVALID_ERROR)
    if "invalid" in kinds:
        query |= Q(result_type="errored", error_type=INVALID_ERROR)
    if "expired" in kinds:
        query |= Q(result_type="expired")
    if "canceled" in kinds:
        query |= Q(result_type="canceled")
    return query


@dataclass
class ResubmitPlan:
    requests: int
    missing: int


def resubmit(batch: Batch, user: AbstractBaseUser | None, kinds: Iterable[str]) -> Submission:
    """A new submission of the requests whose results are of the chosen kinds, linked to `batch`.

    The requests are read, in their file order, from the create body the batch was sent with
    (one pass over it, whatever the number chosen), written to a temporary JSONL file, and
    handed to intake, which checks them; the person reviews and submits the new upload on its
    page. The caller enqueues its check.
    """
    from batches.submissions import create_submission

    reason = batch.resubmit_unavailable_reason
    if reason:
        raise ActionRefused(reason)
    submission_id = batch.submission_id
    assert submission_id is not None  # resubmit_unavailable_reason refuses a batch without one
    kinds = [kind for kind in kinds if kind in RESUBMIT_KINDS]
    if not kinds:
        raise ActionRefused("Choose at least one kind of request to resubmit.")
    chosen = Result.objects.filter(batch=batch).filter(_kinds_filter(kinds)).values("custom_id")
    part = getattr(getattr(batch, "submission_part", None), "index", 0) or 0
    body = SubmissionPart.objects.get(submission_id=submission_id, index=part).body
    spans = (
        BatchRequest.objects.filter(
            submission_id=submission_id, part=part, custom_id__in=Subquery(chosen)
        )
        .order_by("offset")
        .values_list("offset", "length")
    )
    written = 0
    with tempfile.TemporaryFile() as handle:
        for raw in downloads.spans_of(body, spans.iterator(chunk_size=2000)):
            handle.write(raw + b"\n")
            written += 1
        if not written:
            raise ActionRefused("No stored requests match the kinds you chose.")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        upload = File(handle, name=f"resubmit-{batch.api_id[-12:]}-{stamp}.jsonl")
        upload.size = handle.seek(0, 2)
        handle.seek(0)
        name = f"Resubmit of {batch.display_name}"[:200]
        with transaction.atomic():
            return create_submission(
                batch.workspace, user, upload, name=name, resubmission_of=batch
            )
