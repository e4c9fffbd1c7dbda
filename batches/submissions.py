"""From an uploaded file to batches, exactly once.

1. `create_submission` stores the upload on disk and checks it (a CSV once it has its options).
2. `validate_submission` reads the file line by line and records the report and the split plan.
3. `request_submit` moves a clean submission to `submitting` with a conditional update, so a double
   click or a reload starts nothing twice; the caller enqueues `create_batches` after the commit.
4. `create_batches` stores the requests, then creates each part's batch. A create whose answer was
   lost (a timeout, a 5xx) may still have made the batch, so before trying again it looks for it
   among the workspace's newest batches, and adopts it instead of creating a second.
"""

import csv
import io
import json
import logging
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from batches import api, intake
from batches.api import ApiClient, ApiError
from batches.models import Batch, BatchRequest, Submission, SubmissionPart, Workspace
from batches.sync import api_fields, claim_lease

logger = logging.getLogger(__name__)

STORE_CHUNK = 2000
# Slack on each side of a lost create's time window: the API's clock and this server's differ.
CLOCK_SLACK = timedelta(minutes=2)


def detect_format(filename: str) -> str | None:
    name = filename.lower().removesuffix(".gz")
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return Submission.Format.JSONL
    if name.endswith(".csv"):
        return Submission.Format.CSV
    return None


def create_submission(
    workspace: Workspace,
    user,
    uploaded_file,
    *,
    name: str = "",
    oversize: str = Submission.Oversize.SPLIT,
    csv_options: dict | None = None,
    resubmission_of: Batch | None = None,
    validate: bool = True,
) -> Submission:
    filename = Path(uploaded_file.name).name
    fmt = detect_format(filename)
    if fmt is None:
        raise ValueError(f"{filename} is neither .jsonl nor .csv (optionally .gz).")
    submission = Submission(
        key=uuid.uuid4(),
        workspace=workspace,
        created_by=user,
        name=name,
        source_filename=filename,
        source_format=fmt,
        oversize=oversize,
        csv_options=csv_options or {},
        resubmission_of=resubmission_of,
        upload_size=uploaded_file.size,
    )
    submission.upload.save(filename, uploaded_file, save=False)
    submission.save()
    if validate and (fmt == Submission.Format.JSONL or csv_options):
        validate_submission(submission)
    return submission


def csv_columns(submission: Submission) -> list[str]:
    """The header of an uploaded CSV, for the template form; empty if it cannot be read."""
    try:
        for _, raw in intake.physical_lines(Path(submission.upload.path)):
            return [cell.strip() for cell in next(csv.reader([raw.decode("utf-8", "replace")]))]
    except (intake.FileDamaged, csv.Error, StopIteration, OSError):
        pass
    return []


def csv_sample_row(submission: Submission) -> dict[str, str]:
    """The first data row, for the live preview of the template."""
    try:
        lines = (raw.decode("utf-8", "replace") + "\n" for _, raw in intake.physical_lines(
            Path(submission.upload.path)))  # fmt: skip
        reader = csv.reader(lines)
        header = [cell.strip() for cell in next(reader)]
        for cells in reader:
            if any(cell.strip() for cell in cells):
                return dict(zip(header, cells, strict=False))
    except (intake.FileDamaged, csv.Error, StopIteration, OSError):
        pass
    return {}


# The states in which a submission's options may change and its file be checked again.
EDITABLE = (
    Submission.State.NEEDS_TEMPLATE,
    Submission.State.HAS_PROBLEMS,
    Submission.State.READY,
)


def validate_submission(submission: Submission) -> intake.Report:
    csv_options = None
    if submission.source_format == Submission.Format.CSV:
        csv_options = intake.CsvOptions.from_dict(submission.csv_options)
    # The full report goes to a file as the problems are found, and is stored from that file:
    # a broken 2 GB upload has a large report, which never sits in memory.
    with tempfile.TemporaryFile() as raw:
        report_out = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=True)
        report = intake.validate_file(
            Path(submission.upload.path),
            submission.source_format,
            models=submission.workspace.models_available or None,
            csv_options=csv_options,
            oversize=submission.oversize,
            report_out=report_out,
        )
        report_out.flush()
        raw.seek(0)
        if submission.report_file:
            submission.report_file.delete(save=False)
        if report.problem_count:
            submission.report_file.save("problems.csv", File(raw), save=False)
        report_out.detach()
    fields = {
        "request_count": report.request_count,
        "request_bytes": report.request_bytes,
        "problem_count": report.problem_count,
        "problems": [problem.as_dict() for problem in report.problems],
        "models_used": dict(report.models.most_common()),
        "estimate": {
            **report.estimate,
            "parts": report.parts,
            "preview": report.preview,
            "notes": report.notes,
        },
        "validated_at": timezone.now(),
        "report_file": submission.report_file.name or "",
        "state": Submission.State.READY if report.ok else Submission.State.HAS_PROBLEMS,
    }
    with transaction.atomic():
        # Only while still editable: a Submit pressed while this ran wins, and its parts stay.
        if not Submission.objects.filter(pk=submission.pk, state__in=EDITABLE).update(**fields):
            submission.refresh_from_db()
            return report
        submission.parts.all().delete()
        if report.ok:
            SubmissionPart.objects.bulk_create(
                SubmissionPart(
                    submission=submission,
                    index=index,
                    request_count=part["requests"],
                    request_bytes=part["bytes"],
                )
                for index, part in enumerate(report.parts)
            )
    submission.refresh_from_db()
    return report


def request_submit(submission: Submission) -> bool:
    """Ready → submitting, once. False when it was not ready (already submitted, or problems)."""
    changed = Submission.objects.filter(
        pk=submission.pk, state__in=[Submission.State.READY, Submission.State.FAILED]
    ).update(state=Submission.State.SUBMITTING, submit_error="", submit_requested_at=timezone.now())
    return changed == 1


# A submit task that has not finished this long after it was asked for is presumed lost (a
# worker killed, a broker that dropped the message): `stalled_submissions` hands it out again.
# The part claims make a second task harmless even when the first is merely slow.
SUBMIT_STALL = timedelta(minutes=2)


def stalled_submissions(now: datetime) -> list[int]:
    from django.db.models import Q

    stalled = Submission.objects.filter(
        state=Submission.State.SUBMITTING, submit_requested_at__lt=now - SUBMIT_STALL
    ).exclude(
        # A part being created right now holds a live claim.
        parts__claimed_until__gte=now
    )
    return list(stalled.filter(Q(parts__batch=None)).distinct().values_list("pk", flat=True))


def store_requests(submission: Submission) -> int:
    """Keep every request (to show beside its result, and to resubmit). Idempotent."""
    if BatchRequest.objects.filter(submission=submission).count() == submission.request_count:
        return 0
    csv_options = None
    if submission.source_format == Submission.Format.CSV:
        csv_options = intake.CsvOptions.from_dict(submission.csv_options)
    rows, stored = [], 0
    for request in intake.iter_placed_requests(
        Path(submission.upload.path), submission.source_format, csv_options
    ):
        rows.append(
            BatchRequest(
                submission=submission,
                part=request.part,
                custom_id=request.custom_id,
                line=request.line,
                params=request.params,
            )
        )
        if len(rows) >= STORE_CHUNK:
            BatchRequest.objects.bulk_create(rows, ignore_conflicts=True)
            stored += len(rows)
            rows = []
    if rows:
        BatchRequest.objects.bulk_create(rows, ignore_conflicts=True)
        stored += len(rows)
    return stored


def _create_body(submission: Submission, part: SubmissionPart):
    """The part's create body in a temporary file, written request by request."""
    body = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
    body.write(b'{"requests":[')
    requests = (
        BatchRequest.objects.filter(submission=submission, part=part.index)
        .order_by("line")
        .values_list("custom_id", "params")
    )
    for number, (custom_id, params) in enumerate(requests.iterator(chunk_size=STORE_CHUNK)):
        if number:
            body.write(b",")
        item = {"custom_id": custom_id, "params": params}
        body.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
    body.write(b"]}")
    body.seek(0)
    return body


# The API can briefly not list a batch it has just created: look a few times before deciding
# that a lost create made nothing.
LOOKUP_DELAYS = (0, 2, 5)


def _answer_may_be_lost(error: ApiError) -> bool:
    """Whether the batch may exist although the create failed: a timeout, a broken connection
    or a server error. A 4xx, and a 529 (overloaded, turned away), mean nothing was created."""
    return error.status is None or (error.status >= 500 and error.status != 529)


def _find_lost_batch(client: ApiClient, part: SubmissionPart) -> dict | None:
    """The batch that the part's last create made although its answer never arrived.

    A candidate is a batch of the part's size, created around the time of that attempt (from
    when it was sent to when it timed out, with slack for the two clocks), that no other part
    has adopted. More than one is a question only a person can answer.
    """
    since = part.create_started_at - CLOCK_SLACK
    until = part.create_started_at + timedelta(seconds=settings.API_TIMEOUT_SECONDS) + CLOCK_SLACK
    taken = set(
        Batch.objects.filter(workspace=part.submission.workspace)
        .exclude(submission_part=None)
        .values_list("api_id", flat=True)
    )
    candidates: list[dict] = []
    for delay in LOOKUP_DELAYS:
        if delay:
            api.sleep(delay)
        candidates = [
            item
            for item in client.list_batches(limit=100).data
            if item["id"] not in taken
            and since <= api_fields(item)["created_at"] <= until
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
    return candidates[0] if candidates else None


def _claim_part(part: SubmissionPart, now: datetime) -> bool:
    from django.db.models import Q

    return (
        SubmissionPart.objects.filter(pk=part.pk, batch=None)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + claim_lease())
        == 1
    )


def _record_batch(submission: Submission, part: SubmissionPart, item: dict) -> Batch:
    name = submission.display_name
    if submission.parts.count() > 1:
        name = f"{name} (part {part.index + 1} of {submission.parts.count()})"
    now = timezone.now()
    batch, _ = Batch.objects.update_or_create(
        workspace=submission.workspace,
        api_id=item["id"],
        defaults={
            **api_fields(item),
            "name": name[:200],
            "submitted_by": submission.created_by,
            "source_filename": submission.source_filename,
            "submission": submission,
            "last_polled_at": now,
            "next_poll_at": now + timedelta(seconds=settings.SYNC_INTERVAL_SECONDS),
        },
    )
    SubmissionPart.objects.filter(pk=part.pk).update(
        batch=batch, claimed_until=None, error="", create_started_at=None
    )
    return batch


def _create_part(client: ApiClient, submission: Submission, part: SubmissionPart) -> Batch:
    attempts = settings.API_MAX_ATTEMPTS
    for attempt in range(1, attempts + 1):
        part.refresh_from_db()
        # `create_started_at` is set while a create's outcome is unknown (sent, and no clear
        # answer yet), also across a crashed worker: then look before sending another.
        if part.create_started_at is not None:
            found = _find_lost_batch(client, part)
            if found is not None:
                logger.info("Adopting batch %s, made by a create whose answer was lost",
                            found["id"])  # fmt: skip
                return _record_batch(submission, part, found)
        SubmissionPart.objects.filter(pk=part.pk).update(
            create_started_at=timezone.now(), create_attempts=part.create_attempts + 1
        )
        with _create_body(submission, part) as body:
            try:
                item = client.create_batch(body)  # streamed from disk; never retried inside
            except ApiError as error:
                if not _answer_may_be_lost(error):
                    # Turned away: nothing to look for next time.
                    SubmissionPart.objects.filter(pk=part.pk).update(create_started_at=None)
                if not error.retryable or attempt == attempts:
                    raise
                api.sleep(max(error.retry_after or 0, min(2**attempt, 30)))
                continue
        return _record_batch(submission, part, item)
    raise AssertionError("unreachable")


def create_batches(submission_id: int, *, client: ApiClient | None = None) -> Submission:
    """The submit task's body: every part of a submitting submission becomes one batch."""
    submission = Submission.objects.select_related("workspace", "created_by").get(pk=submission_id)
    if submission.state != Submission.State.SUBMITTING:
        return submission
    try:
        store_requests(submission)
        with ApiClient.using(submission.workspace, client) as client:
            _create_parts(client, submission)
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
        if not _claim_part(part, timezone.now()):
            continue  # another worker is creating it
        try:
            _create_part(client, submission, part)
        except ApiError as error:
            SubmissionPart.objects.filter(pk=part.pk).update(claimed_until=None, error=str(error))
            Submission.objects.filter(pk=submission.pk).update(
                state=Submission.State.FAILED, submit_error=str(error)
            )
            logger.warning("Submitting %s failed: %s", submission.key, error)
            return
    if not submission.parts.filter(batch=None).exists():
        Submission.objects.filter(pk=submission.pk).update(
            state=Submission.State.SUBMITTED, submitted_at=timezone.now()
        )
