"""Every file the dashboard gives back, streamed: a batch's results (raw JSONL, flat CSV, the
upload's CSV with answers), an upload's problem report, valid lines and left-out lines, and one
request of an upload as it will be sent."""

from uuid import UUID

from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from batches import downloads
from batches.models import Batch, BatchRequest, Submission
from batches.operations import batches as batch_operations
from batches.roles import Ability
from batches.views.access import AuthenticatedHttpRequest, batch_for, submission_for

CSV = "text/csv; charset=utf-8"
JSONL = "application/x-ndjson"


def _recorded(request: AuthenticatedHttpRequest, batch: Batch, name: str) -> None:
    batch_operations.record_download(batch, request.user, name, request=request)


def _batch_download(
    request: AuthenticatedHttpRequest, slug: str, api_id: str, fmt: str, content_type: str
) -> StreamingHttpResponse:
    batch = batch_for(request, slug, api_id, Ability.DOWNLOAD)
    try:
        chunks, name = downloads.batch_file(batch, fmt)
    except downloads.NotAvailable as reason:
        raise Http404(str(reason)) from None
    _recorded(request, batch, name)
    return downloads.attachment(chunks, name, content_type)


@require_GET
def download_jsonl(
    request: AuthenticatedHttpRequest, slug: str, api_id: str
) -> StreamingHttpResponse:
    return _batch_download(request, slug, api_id, "jsonl", JSONL)


@require_GET
def download_csv(
    request: AuthenticatedHttpRequest, slug: str, api_id: str
) -> StreamingHttpResponse:
    return _batch_download(request, slug, api_id, "csv", CSV)


@require_GET
def download_answers(
    request: AuthenticatedHttpRequest, slug: str, api_id: str
) -> StreamingHttpResponse:
    return _batch_download(request, slug, api_id, "answers", CSV)


# An upload's files ------------------------------------------------------------------------------


def _stem(submission: Submission) -> str:
    return submission.source_filename.removesuffix(".gz").rsplit(".", 1)[0] or "upload"


def _own_format(submission: Submission) -> tuple[str, str]:
    return ("csv", CSV) if submission.is_csv else ("jsonl", JSONL)


def _checked(submission: Submission) -> None:
    """Downloads that need the check's index of requests (written just after its report)."""
    if not submission.is_checked:
        raise Http404("The file has not been checked yet.")
    if submission.request_count and submission.requests_indexed_at is None:
        raise Http404("The check's report is being completed; try again in a moment.")


@require_GET
def submission_report(
    request: AuthenticatedHttpRequest, slug: str, key: UUID
) -> StreamingHttpResponse:
    submission = submission_for(request, slug, key)
    if not submission.report_file:
        raise Http404("This file has no problems to report.")
    name = f"{_stem(submission)}-problems.csv"
    return downloads.attachment(downloads.stored_file(submission.report_file), name, CSV)


@require_GET
def submission_valid_lines(
    request: AuthenticatedHttpRequest, slug: str, key: UUID
) -> StreamingHttpResponse:
    """The requests that passed every check, in the upload's own format and order."""
    submission = submission_for(request, slug, key, Ability.DOWNLOAD)
    _checked(submission)
    if not submission.request_count:
        raise Http404("No request of this file is valid.")
    extension, content_type = _own_format(submission)
    name = f"{_stem(submission)}-valid.{extension}"
    return downloads.attachment(downloads.valid_lines(submission), name, content_type)


@require_GET
def submission_left_out_lines(
    request: AuthenticatedHttpRequest, slug: str, key: UUID
) -> StreamingHttpResponse:
    """The lines (or rows) of the upload that have problems, as they were, to fix and upload."""
    submission = submission_for(request, slug, key, Ability.DOWNLOAD)
    _checked(submission)
    if not submission.rejected_count:
        raise Http404("No line of this file was left out.")
    extension, content_type = _own_format(submission)
    name = f"{_stem(submission)}-left-out.{extension}"
    return downloads.attachment(downloads.left_out_lines(submission), name, content_type)


@require_GET
def submission_request(
    request: AuthenticatedHttpRequest, slug: str, key: UUID, custom_id: str
) -> StreamingHttpResponse:
    """One request of the upload, whole, exactly as it will be sent."""
    submission = submission_for(request, slug, key)
    _checked(submission)
    if "\x00" in custom_id:
        raise Http404
    found = get_object_or_404(BatchRequest, submission=submission, custom_id=custom_id)
    part = get_object_or_404(submission.parts, index=found.part)
    response = StreamingHttpResponse(
        downloads.stored_range(part.body, found.offset, found.length),
        content_type="application/json; charset=utf-8",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="{custom_id}.json"'
    return response
