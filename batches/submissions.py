"""From an uploaded file to batches, exactly once.

1. `create_submission` stores the upload (through the storage API, so any worker can read it)
   and, for JSONL or a CSV with its options, asks for a check (`intake.job`).
2. `request_submit` moves a checked submission to `submitting` with a conditional update, so a
   double click or a reload starts nothing twice (`operations.uploads.submit` does it under the
   workspace's budget lock, with the spend rules); `create_batches` runs after the commit. With
   problems in the file, only an explicit "submit the valid requests" does this.
3. `create_batches` streams each part's create body, written by the check, from storage to the
   API: the upload is never read again. A create whose answer was lost (a timeout, a 5xx) may
   still have made the batch, so before the client tries again it looks for that batch among the
   workspace's newest ones and adopts it instead of creating a second.
"""

import logging
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.core.files import File
from django.db.models import Q
from django.utils import timezone

from batches import labels
from batches.claims import Claim
from batches.client import ApiClient, ApiError
from batches.intake import job
from batches.intake.reading import detect_format
from batches.models import Batch, Submission, SubmissionPart, Workspace
from foundations import storage
from foundations.local_files import LimitedReader

logger = logging.getLogger(__name__)

# Slack on each side of a lost create's time window: the API's clock and this server's differ.
CLOCK_SLACK = timedelta(minutes=2)
# A submit task that has not finished this long after it was asked for is presumed lost (a
# worker killed, a broker that dropped the message): `stalled_submissions` hands it out again.
# The part claims make a second task harmless even when the first is merely slow.
SUBMIT_STALL = timedelta(minutes=2)


def create_submission(
    workspace: Workspace,
    user: AbstractBaseUser | None,
    uploaded_file: File,
    *,
    name: str = "",
    oversize: str = Submission.Oversize.SPLIT,
    csv_options: dict | None = None,
    resubmission_of: Batch | None = None,
    spend_cap: Decimal | None = None,
    labels: list[str] | None = None,
    betas: list[str] | None = None,
) -> Submission:
    """Store an upload. A JSONL file, or a CSV with its options, is then `checking`: the caller
    enqueues `tasks.check_submission` (after the commit). A CSV without options waits for them."""
    if uploaded_file.name is None:  # a File made without one: nothing tells its format
        raise ValueError("The upload has no file name.")
    filename = Path(uploaded_file.name).name
    fmt = detect_format(filename)
    if fmt is None:
        raise ValueError(f"{filename} is neither .jsonl nor .csv (optionally .gz).")
    submission = Submission(
        key=uuid.uuid4(),
        workspace=workspace,
        # A login is a row of the user model (AUTH_USER_MODEL), which the field's type names.
        created_by=cast(User | None, user),
        name=name,
        source_filename=filename,
        source_format=fmt,
        oversize=oversize,
        csv_options=csv_options or {},
        resubmission_of=resubmission_of,
        upload_size=uploaded_file.size,
        spend_cap=spend_cap,
        labels=labels or [],
        betas=betas or [],
    )
    submission.upload.save(filename, uploaded_file, save=False)
    submission.save()
    if fmt == Submission.Format.JSONL or csv_options:
        job.request_check(submission)
        submission.refresh_from_db()
    return submission


def set_csv_options(submission: Submission, options: dict) -> bool:
    """New template options for a CSV upload, then a new check; False when it can no longer
    change (submitted meanwhile)."""
    if not Submission.objects.filter(pk=submission.pk, state__in=Submission.EDITABLE).update(
        csv_options=options
    ):
        return False
    submission.refresh_from_db()
    return job.request_check(submission)


def request_submit(submission: Submission, *, valid_only: bool = False) -> bool:
    """Checked → submitting, once. False when it cannot be submitted now (already submitted,
    still checking, or with problems and no explicit choice to send only the valid requests)."""
    allowed = Q(state__in=[Submission.State.READY, Submission.State.FAILED])
    if valid_only:
        allowed |= Q(state=Submission.State.HAS_PROBLEMS, check_complete=True, request_count__gt=0)
    changed = (
        Submission.objects.filter(pk=submission.pk)
        .filter(allowed)
        .update(
            state=Submission.State.SUBMITTING,
            submit_error="",
            submit_requested_at=timezone.now(),
            submit_valid_only=valid_only,
        )
    )
    return changed == 1


def stalled_submissions(now: datetime) -> list[int]:
    stalled = Submission.objects.filter(
        state=Submission.State.SUBMITTING, submit_requested_at__lt=now - SUBMIT_STALL
    ).exclude(
        # A part being created right now holds a live claim.
        parts__claimed_until__gte=now
    )
    return list(stalled.filter(parts__batch=None).distinct().values_list("pk", flat=True))


def _lookup_delays() -> tuple[float, ...]:
    """The API can briefly not list a batch it has just created: look a few times, a few seconds
    apart (the retry policy's own pace), before deciding that a lost create made nothing."""
    initial = settings.API_RETRY_INITIAL_WAIT_SECONDS
    return (0.0, 4 * initial, 10 * initial)


def _find_lost_batch(client: ApiClient, part: SubmissionPart) -> dict | None:
    """The batch that the part's last create made although its answer never arrived.

    A candidate is a batch of the part's size, created around the time of that attempt (from
    when it was sent to when it timed out, with slack for the two clocks), that no other part
    has adopted. More than one is a question only a person can answer.
    """
    part.refresh_from_db(fields=["create_started_at"])
    if part.create_started_at is None:
        return None
    since = part.create_started_at - CLOCK_SLACK
    until = part.create_started_at + timedelta(seconds=settings.API_TIMEOUT_SECONDS) + CLOCK_SLACK
    taken = set(
        Batch.objects.filter(workspace_id=part.submission.workspace_id)
        .exclude(submission_part=None)
        .values_list("api_id", flat=True)
    )
    candidates: list[dict] = []
    for delay in _lookup_delays():
        if delay:
            time.sleep(delay)
        candidates = [
            item
            for item in client.list_batches(limit=100).data
            if item["id"] not in taken
            and since <= Batch.fields_from_api(item)["created_at"] <= until
            and sum(item["request_counts"].values()) == part.request_count
        ]
        if candidates:
            break
    if len(candidates) > 1:
        raise ApiError(
            f"{len(candidates)} batches of {part.request_count:,} requests were created in this "
            "workspace while the answer to ours was lost, so the dashboard cannot tell which one "
            "is this file's. Check them on the batch list before trying again: "
            + ", ".join(item["id"] for item in candidates),
            error_type="ambiguous_create",
        )
    if candidates:
        logger.info("Adopting batch %s, made by a create whose answer was lost",
                    candidates[0]["id"])  # fmt: skip
        return candidates[0]
    # Nothing was made: the next attempt starts afresh.
    SubmissionPart.objects.filter(pk=part.pk).update(create_started_at=None)
    return None


def _record_batch(submission: Submission, part: SubmissionPart, item: dict) -> Batch:
    name = submission.display_name
    count = submission.parts.count()
    if count > 1:
        name = f"{name} (part {part.index + 1} of {count})"
    now = timezone.now()
    batch, _ = Batch.objects.update_or_create(
        workspace=submission.workspace,
        api_id=item["id"],
        defaults={
            **Batch.fields_from_api(item),
            "name": name[:200],
            "submitted_by": submission.created_by,
            "source_filename": submission.source_filename,
            "submission": submission,
            "last_polled_at": now,
            "next_poll_at": now + timedelta(seconds=settings.SYNC_INTERVAL_SECONDS),
        },
    )
    if submission.labels:
        labels.set_labels(batch, submission.labels)
    SubmissionPart.objects.filter(pk=part.pk).update(
        batch=batch, claimed_until=None, error="", create_started_at=None
    )
    return batch


def _create_part(
    client: ApiClient, submission: Submission, part: SubmissionPart, claim: Claim
) -> Batch:
    body = part.body

    def before_send() -> None:
        claim.progressed()
        # From here until a clear answer, the outcome is unknown, also across a crashed worker:
        # the next attempt (of this task or of a later one) looks for the batch first.
        SubmissionPart.objects.filter(pk=part.pk).update(
            create_started_at=timezone.now(), create_attempts=part.create_attempts + 1
        )

    def open_body() -> LimitedReader:
        if body.name is None:
            raise ValueError(f"Part {part.pk} has no stored body to send.")
        return storage.stream(body.name, storage=body.storage)

    # A crashed attempt may have made the batch already: look before sending anything.
    found = _find_lost_batch(client, part)
    if found is None:
        try:
            found = client.create_batch(
                open_body,
                part.request_bytes,
                before_send=before_send,
                find_existing=lambda: _find_lost_batch(client, part),
                betas=submission.betas,
            )
        except ApiError as error:
            if not error.may_have_made_it:
                # Turned away: nothing to look for next time.
                SubmissionPart.objects.filter(pk=part.pk).update(create_started_at=None)
            raise
    return _record_batch(submission, part, found)


def create_batches(submission_pk: int, *, client: ApiClient | None = None) -> Submission:
    """The submit task's body: every part of a submitting submission becomes one batch."""
    submission = Submission.objects.select_related("workspace", "created_by").get(pk=submission_pk)
    if submission.state != Submission.State.SUBMITTING:
        return submission
    try:
        with ApiClient.using(submission.workspace, client) as api:
            _create_parts(api, submission)
    except Exception as error:
        # Not a refusal from the API but a fault of ours (or of the database): say so, keep
        # what was created, and let the user try again rather than leave "submitting" forever.
        logger.exception("Submitting %s failed", submission.key)
        Submission.objects.filter(pk=submission.pk).update(
            state=Submission.State.FAILED,
            submit_error=f"An unexpected error stopped the submission ({type(error).__name__}).",
        )
    submission.refresh_from_db()
    return submission


def _create_parts(client: ApiClient, submission: Submission) -> None:
    for part in submission.parts.filter(batch=None).order_by("index"):
        claim = Claim.take(SubmissionPart, part.pk, "claimed_until", where=Q(batch=None))
        if claim is None:
            continue  # another worker is creating it
        try:
            # Renewed while the create goes on: each attempt counts as progress, and the
            # longest wait between two attempts is shorter than CLAIM_STALL_SECONDS.
            with claim.kept_alive():
                _create_part(client, submission, part, claim)
        except ApiError as error:
            claim.release(error=str(error))
            Submission.objects.filter(pk=submission.pk).update(
                state=Submission.State.FAILED, submit_error=str(error)
            )
            logger.warning("Submitting %s failed: %s", submission.key, error)
            return
        except BaseException:
            claim.release()  # a fault of ours: the next try may take the part at once
            raise
    if not submission.parts.filter(batch=None).exists():
        Submission.objects.filter(pk=submission.pk).update(
            state=Submission.State.SUBMITTED, submitted_at=timezone.now()
        )


def csv_header_and_first_row(submission: Submission) -> tuple[list[str], dict[str, str]]:
    """The columns of an uploaded CSV and its first row, for the template form and its preview."""
    from batches.intake.reading import csv_header_and_first_row as read

    name = submission.upload.name
    if name is None:
        raise ValueError(f"Submission {submission.pk} has no upload.")
    return read(name)
