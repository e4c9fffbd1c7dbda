"""What a person can do to a batch from the dashboard: cancel, delete, refresh now, resubmit.

Each function checks its own preconditions and raises `ActionRefused` with a sentence for the
person when the batch is not in a state that allows it. Calls to the API are bounded (few attempts,
a short timeout) because a person is waiting; afterwards the mirror is updated with the answer, so
the page shows the new state at once.
"""

import tempfile
from dataclasses import dataclass

from django.core.files import File
from django.db import transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from batches import downloads, sync
from batches.api import ApiClient, ApiError
from batches.models import Batch, BatchRequest, Result, Submission, SubmissionPart

# A person is waiting: two attempts, ten seconds each.
ACTION_ATTEMPTS = 2
ACTION_TIMEOUT = 10.0

RESUBMIT_KINDS = {
    "retryable": "Errored with a temporary error (overloaded, rate limited, API error)",
    "invalid": "Errored as invalid requests (need a fix first)",
    "expired": "Expired",
    "canceled": "Canceled",
}
INVALID_ERROR = "invalid_request_error"


class ActionRefused(Exception):
    """The action does not apply to the batch as it is; the message says why."""


def _client(batch: Batch, client: ApiClient | None):
    """A bounded client: an action is a click that waits for its answer."""
    return ApiClient.using(
        batch.workspace, client, max_attempts=ACTION_ATTEMPTS, timeout=ACTION_TIMEOUT
    )


def _refused_by_api(error: ApiError, what: str) -> ActionRefused:
    return ActionRefused(f"The API refused to {what}: {error}")


def cancel_batch(batch: Batch, *, client: ApiClient | None = None) -> Batch:
    if batch.gone_at:
        raise ActionRefused("This batch was deleted from the API; there is nothing to cancel.")
    if batch.processing_status != Batch.Status.IN_PROGRESS:
        raise ActionRefused("Only a batch in progress can be canceled.")
    try:
        with _client(batch, client) as api:
            item = api.cancel_batch(batch.api_id)
    except ApiError as error:
        raise _refused_by_api(error, "cancel the batch") from error
    sync.upsert_batches(batch.workspace, [item], timezone.now())
    batch.refresh_from_db()
    return batch


def delete_batch(batch: Batch, *, keep_local: bool, client: ApiClient | None = None) -> bool:
    """Delete the batch from the API. With `keep_local` the mirror and its stored results stay
    (marked deleted); without it they go too. Returns whether the local copy was kept."""
    if batch.is_active and not batch.gone_at:
        raise ActionRefused("A batch must end before it can be deleted: cancel it first.")
    if not batch.gone_at:
        try:
            with _client(batch, client) as api:
                api.delete_batch(batch.api_id)
        except ApiError as error:
            if not error.is_not_found:
                raise _refused_by_api(error, "delete the batch") from error
    if keep_local:
        Batch.objects.filter(pk=batch.pk).update(gone_at=timezone.now(), next_poll_at=None)
        return True
    if batch.results_file:
        batch.results_file.delete(save=False)
    batch.delete()
    return False


def refresh_batch(batch: Batch, *, client: ApiClient | None = None) -> Batch:
    """Ask the API for the batch now; if it has ended and its results are missing, fetch them
    (again, also after ingestion gave up)."""
    from batches import tasks

    if batch.gone_at:
        raise ActionRefused("This batch was deleted from the API; the stored copy stays as it is.")
    try:
        with _client(batch, client) as api:
            item = api.retrieve_batch(batch.api_id)
    except ApiError as error:
        raise _refused_by_api(error, "show the batch") from error
    sync.upsert_batches(batch.workspace, [item], timezone.now())
    batch.refresh_from_db()
    if batch.is_ended and batch.results_ingested_at is None and not batch.archived_at:
        # Lift the backoff and the attempt limit; an ingestion that runs now keeps its claim.
        Batch.objects.filter(pk=batch.pk).update(ingest_attempts=0, ingest_not_before=None)
        tasks.ingest_results.delay_on_commit(batch.pk)
    return batch


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


def _kinds_filter(kinds) -> Q:
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


def resubmit_unavailable_reason(batch: Batch) -> str:
    if batch.submission_id is None:
        return (
            "This batch was created outside the dashboard, so its requests are not stored here "
            "and cannot be sent again from this page."
        )
    if not batch.is_ended:
        return "Requests can be resubmitted once the batch has ended."
    if batch.results_ingested_at is None:
        return "The results are not stored yet; resubmitting is possible once they are."
    return ""


def resubmit(batch: Batch, user, kinds) -> Submission:
    """A new submission of the requests whose results are of the chosen kinds, linked to `batch`.

    The requests are read, in their file order, from the create body the batch was sent with
    (one pass over it, whatever the number chosen), written to a temporary JSONL file, and
    handed to intake, which checks them; the person reviews and submits the new upload on its
    page. The caller enqueues its check.
    """
    from batches.submissions import create_submission

    reason = resubmit_unavailable_reason(batch)
    if reason:
        raise ActionRefused(reason)
    kinds = [kind for kind in kinds if kind in RESUBMIT_KINDS]
    if not kinds:
        raise ActionRefused("Choose at least one kind of request to resubmit.")
    chosen = Result.objects.filter(batch=batch).filter(_kinds_filter(kinds)).values("custom_id")
    part = getattr(getattr(batch, "submission_part", None), "index", 0) or 0
    body = SubmissionPart.objects.get(submission_id=batch.submission_id, index=part).body
    spans = (
        BatchRequest.objects.filter(
            submission_id=batch.submission_id, part=part, custom_id__in=Subquery(chosen)
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
