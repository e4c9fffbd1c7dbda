"""The upload pages: upload a file, watch it being checked, read its report, fix a CSV's
template, see the price, submit it once. (Its downloads are in `batches.views.downloads`.)"""

import logging
from typing import cast
from urllib.parse import unquote
from uuid import UUID

import orjson
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser, User
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.handlers.wsgi import WSGIRequest
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from batches import budgets, mirror, polling, roles, submissions, tasks, trials
from batches.client import ApiClient, ApiError
from batches.forms import CsvOptionsForm, TryForm, UploadForm
from batches.intake import job
from batches.intake.templating import CsvOptions, guess_id_column
from batches.models import Submission, Trial, Workspace
from batches.operations import Refused
from batches.operations import uploads as upload_operations
from batches.roles import Ability
from batches.views.access import AuthenticatedHttpRequest, poll_key, submission_for, workspace_for
from foundations import betas, slow_clients

logger = logging.getLogger(__name__)
TEMPLATE = "batches/submission.html"


def _ensure_models(workspace: Workspace) -> None:
    """The upload form picks from the workspace's models; fetch them once if the sync has not.

    One bounded call: if the API is slow or down, the page still renders and says so.
    """
    if workspace.models_available:
        return
    try:
        with ApiClient.for_workspace(workspace, max_attempts=1, timeout=5) as client:
            mirror.refresh_models(workspace, client, timezone.now())
        workspace.refresh_from_db(fields=["models_available", "models_fetched_at"])
    except ApiError as error:
        logger.info("Model list of %s unavailable: %s", workspace.name, error)


def _csv_form(submission: Submission, data: QueryDict | None = None) -> CsvOptionsForm:
    columns, _ = submissions.csv_header_and_first_row(submission)
    return CsvOptionsForm(
        data,
        # Before any options: the custom_id column guessed from the header.
        initial=submission.csv_options or {"id_column": guess_id_column(columns)},
        columns=columns,
        models=submission.workspace.models_available,
    )


def _try_options(submission: Submission) -> list[dict]:
    """The choices of how many first requests to try, each with what it could cost at most."""
    return [
        {"count": count, "cost": trials.cost_of_first(submission, count)}
        for count in range(1, len(submission.first_requests) + 1)
    ]


def _context(
    request: HttpRequest,
    submission: Submission,
    csv_form: CsvOptionsForm | None = None,
    key: tuple | None = None,
) -> dict:
    parts = list(submission.parts.select_related("batch__workspace").order_by("index"))
    tried = list(submission.trials.all()[:30])
    context = {
        "submission": submission,
        "workspace": submission.workspace,
        "csv_form": csv_form,
        "estimate": submission.estimate or {},
        "progress": submission.check_progress() if submission.is_checking else None,
        "parts": parts,
        "batches": [part.batch for part in parts if part.batch is not None],
        "more_problems": max(0, submission.problem_count - len(submission.problems)),
        "can": roles.abilities(request.user, submission.workspace),
        "spending": budgets.spend_check(submission) if submission.estimate else None,
        "trials": tried,
        "trying": any(trial.state == Trial.State.SENDING and not trial.is_lost for trial in tried),
        "try_options": _try_options(submission),
        "tries_left": trials.tries_left(submission.workspace) if submission.first_requests else 0,
    }
    return polling.render_region(request, TEMPLATE, "live", context, key)


def _still_changing(context: dict) -> bool:
    """Worth polling: the upload is being checked or submitted, a request is being tried, or one
    of its batches changes."""
    return (
        context["submission"].still_changing
        or context["trying"]
        or any(batch.still_changing for batch in context["batches"])
    )


# The upload page's script sends the file as the whole body of the request, with the form's
# other fields in the query string: the browser reports how much is sent (a progress bar for a
# 2 GB file), and the server copies the bytes to disk instead of parsing them as multipart.
RAW_BODY = "application/octet-stream"
RAW_CHUNK_BYTES = 1024 * 1024


class RawUploadError(Exception):
    """Why a file sent as the request's body was not taken; the message says what to do."""


def _raw_upload(request: HttpRequest) -> TemporaryUploadedFile:
    """The file the upload page's script sent as the request's body, copied to a temporary file
    (which storage then moves into place). Never reads more than the declared length, nor a
    declared length above the upload limit."""
    # As Django's multipart parser cleans a file's name: the last part of any path, printable
    # characters only (a newline in a name would reach an email's subject), never "." or "..".
    name = unquote(request.headers.get("X-Upload-Filename", "")).replace("\\", "/").rsplit("/")[-1]
    name = "".join(char for char in name if char.isprintable()).strip()
    if name in {"", ".", ".."} or len(name) > 255:
        raise RawUploadError("The file's name is missing or longer than 255 characters.")
    try:
        size = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise RawUploadError(
            "The browser did not say how large the file is: choose it again and upload."
        ) from None
    if size > settings.MAX_UPLOAD_BYTES:
        raise RawUploadError(
            f"{name} is {filesizeformat(size)}; the limit is "
            f"{filesizeformat(settings.MAX_UPLOAD_BYTES)}."
        )
    received = TemporaryUploadedFile(name, RAW_BODY, size, None)
    left = size
    try:
        while left:
            try:
                chunk = request.read(min(RAW_CHUNK_BYTES, left))
            except OSError:  # the connection dropped (the person canceled, or the network)
                # A WSGI request, as every request here is (the slow-client guard that cuts a
                # body off is WSGI middleware): it has the environ the guard marks.
                if slow_clients.was_cut_off(cast(WSGIRequest, request).environ):
                    raise RawUploadError(slow_clients.too_slow_message()) from None
                chunk = b""
            if not chunk:
                raise RawUploadError(
                    f"The upload of {name} was cut off after {filesizeformat(size - left)} of "
                    f"{filesizeformat(size)}: upload it again."
                )
            received.write(chunk)
            left -= len(chunk)
        received.seek(0)
    except BaseException:
        received.close()
        raise
    return received


def _uploadable(user: User | AnonymousUser) -> list[Workspace]:
    """The workspaces this person may upload to, by name."""
    visible = Workspace.objects.visible_to(user).order_by("name")
    return roles.workspaces_where(user, visible, Ability.SUBMIT)


@require_GET
def upload_choose(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The upload page of the workspace picked on an upload page's workspace picker (the first
    the person may upload to, when the pick is not one of them)."""
    uploadable = _uploadable(request.user)
    if not uploadable:
        messages.info(
            request,
            "You may not upload to any workspace: a workspace admin can make you a submitter.",
        )
        return redirect("home")
    chosen = request.GET.get("workspace", "")
    workspace = next((item for item in uploadable if item.slug == chosen), uploadable[0])
    return redirect("upload", workspace.slug)


@require_http_methods(["GET", "POST"])
def upload(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.SUBMIT)
    raw = request.method == "POST" and request.content_type == RAW_BODY
    if not raw:
        return _upload_page(
            request, workspace, UploadForm(request.POST or None, request.FILES or None)
        )
    try:
        received = _raw_upload(request)
    except RawUploadError as error:
        return _upload_page(
            request, workspace, UploadForm(request.GET, {}, file_problem=str(error))
        )
    try:  # Django closes (and deletes) only the files it parsed itself
        return _upload_page(
            request, workspace, UploadForm(request.GET, {"file": received}), raw=True
        )
    finally:
        received.close()


def _upload_page(
    request: AuthenticatedHttpRequest, workspace: Workspace, form: UploadForm, *, raw: bool = False
) -> HttpResponse:
    """Store a valid upload and go to its page (for the page's script: say where), or show the
    form again with what to fix."""
    if request.method == "POST" and form.is_valid():
        _ensure_models(workspace)
        submission = upload_operations.upload(
            workspace,
            request.user,
            form.cleaned_data["file"],
            name=form.cleaned_data["name"],
            oversize=form.cleaned_data["oversize"],
            spend_cap=form.cleaned_data["spend_cap"],
            labels=form.cleaned_data["labels"],
            betas=form.cleaned_data["betas"],
            request=request,
        )
        if raw:  # the script goes there itself
            return JsonResponse({"location": submission.get_absolute_url()}, status=201)
        return redirect(submission)
    recent = workspace.submissions.select_related("created_by").order_by("-created_at")[:8]
    return render(
        request,
        "batches/upload.html",
        {
            "workspace": workspace,
            "form": form,
            "recent": recent,
            "budget": budgets.budget_status(workspace) if workspace.monthly_budget else None,
            "known_betas": betas.KNOWN,
            "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
            "uploadable": _uploadable(request.user),
        },
        status=400 if form.errors else 200,
    )


@require_GET
def submission_detail(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    memo_key = poll_key(request, "submission", slug)
    if polling.unchanged(request, memo_key):
        return polling.nothing_new()
    submission = submission_for(request, slug, key)
    csv_form = None
    if (
        submission.is_csv
        and submission.is_editable
        and roles.may(request.user, submission.workspace, Ability.SUBMIT)
    ):
        # No API call here: a page renders from the database. Without a model list yet (the
        # sync fetches it), the form takes a typed model id.
        csv_form = _csv_form(submission)
    context = _context(request, submission, csv_form, memo_key)
    if polling.is_fragment(request):
        return polling.poll_answer(
            request, TEMPLATE, "live", context, still_changing=_still_changing(context)
        )
    context["still_changing"] = _still_changing(context)
    return render(request, TEMPLATE, context)


@require_POST
def submission_template(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    submission = submission_for(request, slug, key, Ability.SUBMIT)
    if not submission.is_csv or not submission.is_editable:
        messages.info(request, "This submission's options can no longer change.")
        return redirect(submission)
    form = _csv_form(submission, request.POST)
    if not form.is_valid():
        context = _context(request, submission, form)
        context["still_changing"] = _still_changing(context)
        return render(request, TEMPLATE, context, status=400)
    with transaction.atomic():
        if submissions.set_csv_options(submission, form.options()):
            tasks.check_submission.delay_on_commit(submission.pk)
        else:
            messages.info(request, "This submission's options can no longer change.")
    return redirect(submission)


@require_POST
def submission_preview(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    """The first row's request with the options as typed so far (the form's live preview)."""
    submission = submission_for(request, slug, key, Ability.SUBMIT)
    form = _csv_form(submission, request.POST)
    form.is_valid()
    data = form.cleaned_data
    _, row = submissions.csv_header_and_first_row(submission)
    params, problem = None, ""
    if not request.POST.get("template", "").strip():  # nothing typed yet: no error to show
        problem = "Write a template to see the first row's request."
    elif not row:  # a header and no row: no request to show, nothing made up
        problem = "The file has a header but no rows: each row becomes a request."
    elif "template" not in data:
        problem = "; ".join(map(str, form.errors.get("template", [])))
    else:
        options = CsvOptions(
            template=data["template"],
            model=data.get("model") or "",
            max_tokens=data.get("max_tokens") or 0,
            system=data.get("system") or "",
            temperature=data.get("temperature"),
        )
        params = options.params(options.render(row))
    custom_id = row.get(data.get("id_column") or "", "") if data.get("id_column") else "row-1"
    preview = ""
    if params:
        preview = orjson.dumps(
            {"custom_id": custom_id, "params": params}, option=orjson.OPT_INDENT_2
        ).decode()
    return render(
        request,
        f"{TEMPLATE}#preview",
        {"preview_json": preview, "preview_problem": problem},
    )


@require_POST
def submission_stop(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    submission = submission_for(request, slug, key, Ability.SUBMIT)
    if upload_operations.stop_check(submission, request.user, request=request):
        messages.info(request, "Stopping the check. Nothing is kept of it.")
    return redirect(submission)


@require_POST
def submission_check(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    """Check a stopped upload again (or one whose check gave up)."""
    submission = submission_for(request, slug, key, Ability.SUBMIT)
    if submission.is_csv and not submission.csv_options:
        return redirect(submission)
    with transaction.atomic():
        if job.request_check(submission):
            tasks.check_submission.delay_on_commit(submission.pk)
    return redirect(submission)


@require_POST
def submission_submit(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    submission = submission_for(request, slug, key, Ability.SUBMIT)
    valid_only = request.POST.get("valid_only") == "1"
    try:
        started = upload_operations.submit(
            submission,
            request.user,
            valid_only=valid_only,
            confirm_over_budget=request.POST.get("over_budget") == "1",
            request=request,
        )
    except Refused as refusal:
        messages.error(request, str(refusal))
        return redirect(submission)
    if started:
        left_out = (
            f", leaving out {submission.rejected_count:,} lines with problems" if valid_only else ""
        )
        messages.success(
            request,
            f"Submitting {submission.request_count:,} requests{left_out}. The page shows each "
            "batch as soon as the API has it.",
        )
    elif submission.state in (Submission.State.SUBMITTING, Submission.State.SUBMITTED):
        messages.info(request, "This file was already submitted; nothing was sent twice.")
    elif submission.is_checking:
        messages.info(request, "The file is still being checked; submit once the report is in.")
    elif submission.can_submit_valid_part:
        messages.error(
            request,
            "The file has problems: fix them, or choose to submit only the valid requests.",
        )
    else:
        messages.error(request, "Fix the problems in the report before submitting.")
    return redirect(submission)


@require_POST
def submission_try(request: AuthenticatedHttpRequest, slug: str, key: UUID) -> HttpResponse:
    """Send the first requests, or the chosen ones, through the Messages API now (Try first)."""
    submission = submission_for(request, slug, key, Ability.SUBMIT)
    back = f"{submission.get_absolute_url()}#try"
    form = TryForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, " ".join(str(error) for errors in form.errors.values() for error in errors)
        )
        return redirect(back)
    chosen = form.cleaned_data["custom_ids"]
    try:
        made = upload_operations.try_requests(
            submission,
            request.user,
            count=form.cleaned_data["count"] or 3,
            custom_ids=chosen,
            request=request,
        )
    except Refused as refusal:
        messages.error(request, str(refusal))
        return redirect(back)
    count = len(made)
    messages.success(
        request,
        f"Sending {count} request{'s' if count != 1 else ''} through the Messages API: "
        f"{'each answer shows' if count != 1 else 'the answer shows'} below within seconds.",
    )
    return redirect(back)
