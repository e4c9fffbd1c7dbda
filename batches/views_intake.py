"""Upload a file, read its report, fix it, see the price, submit it once."""

import json
import logging

from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from batches import intake, submissions, sync, tasks
from batches.api import ApiClient, ApiError
from batches.forms import CsvOptionsForm, UploadForm
from batches.models import Submission, Workspace
from batches.views import _get_workspace_for_user

logger = logging.getLogger(__name__)


def _get_submission_for_user(request, slug, key) -> Submission:
    workspace = _get_workspace_for_user(request, slug)
    return get_object_or_404(
        Submission.objects.select_related("workspace", "created_by", "resubmission_of"),
        workspace=workspace,
        key=key,
    )


def _ensure_models(workspace: Workspace) -> None:
    """The upload form picks from the workspace's models; fetch them once if the sync has not.

    One bounded call: if the API is slow or down, the page still renders and says so.
    """
    if workspace.models_available:
        return
    try:
        with ApiClient.for_workspace(workspace, max_attempts=1, timeout=5) as client:
            sync.refresh_models(workspace, client, timezone.now())
        workspace.refresh_from_db(fields=["models_available", "models_fetched_at"])
    except ApiError as error:
        logger.info("Model list of %s unavailable: %s", workspace.name, error)


def _csv_form(submission: Submission, data=None) -> CsvOptionsForm:
    initial = submission.csv_options or {}
    return CsvOptionsForm(
        data,
        initial=initial or None,
        columns=submissions.csv_columns(submission),
        models=submission.workspace.models_available,
    )


def _detail_context(submission: Submission, csv_form=None) -> dict:
    estimate = submission.estimate or {}
    preview = [
        {**item, "json": json.dumps(item["params"], indent=2, ensure_ascii=False)}
        for item in estimate.get("preview", [])
    ]
    return {
        "submission": submission,
        "workspace": submission.workspace,
        "csv_form": csv_form,
        "estimate": estimate,
        "preview": preview,
        "parts": estimate.get("parts", []),
        "batches": list(submission.batches.order_by("submission_part__index")),
        "more_problems": max(0, submission.problem_count - len(submission.problems)),
    }


@require_http_methods(["GET", "POST"])
def upload(request, slug):
    workspace = _get_workspace_for_user(request, slug)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        _ensure_models(workspace)
        submission = submissions.create_submission(
            workspace,
            request.user,
            form.cleaned_data["file"],
            name=form.cleaned_data["name"],
            oversize=form.cleaned_data["oversize"],
        )
        return redirect(submission)
    recent = workspace.submissions.select_related("created_by").order_by("-created_at")[:8]
    return render(
        request,
        "batches/upload.html",
        {"workspace": workspace, "form": form, "recent": recent},
        status=400 if form.errors else 200,
    )


@require_GET
def submission_detail(request, slug, key):
    submission = _get_submission_for_user(request, slug, key)
    csv_form = None
    if (
        submission.source_format == Submission.Format.CSV
        and submission.state in submissions.EDITABLE
    ):
        # No API call here: a page renders from the database. Without a model list yet (the
        # sync fetches it), the form takes a typed model id.
        csv_form = _csv_form(submission)
    context = _detail_context(submission, csv_form)
    if request.htmx and not request.htmx.boosted:
        response = render(request, "batches/submission.html#status", context)
        if submission.state != Submission.State.SUBMITTING:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "batches/submission.html", context)


@require_POST
def submission_template(request, slug, key):
    submission = _get_submission_for_user(request, slug, key)
    if (
        submission.source_format != Submission.Format.CSV
        or submission.state not in submissions.EDITABLE
    ):
        messages.info(request, "This submission's options can no longer change.")
        return redirect(submission)
    form = _csv_form(submission, request.POST)
    if not form.is_valid():
        return render(
            request, "batches/submission.html", _detail_context(submission, form), status=400
        )
    if not Submission.objects.filter(pk=submission.pk, state__in=submissions.EDITABLE).update(
        csv_options=form.options()
    ):
        messages.info(request, "This submission's options can no longer change.")
        return redirect(submission)
    submission.refresh_from_db()
    submissions.validate_submission(submission)
    return redirect(submission)


@require_POST
def submission_preview(request, slug, key):
    """The first row's request with the options as typed so far (the form's live preview)."""
    submission = _get_submission_for_user(request, slug, key)
    form = _csv_form(submission, request.POST)
    form.is_valid()
    data = form.cleaned_data
    row = submissions.csv_sample_row(submission)
    params, problem = None, ""
    if "template" not in data:
        problem = "; ".join(form.errors.get("template", [])) or "Write a template to see it."
    else:
        options = intake.CsvOptions(
            template=data["template"],
            model=data.get("model") or "",
            max_tokens=data.get("max_tokens") or 0,
            system=data.get("system") or "",
            temperature=data.get("temperature"),
        )
        params = options.params(options.render(row))
    custom_id = row.get(data.get("id_column") or "", "") if data.get("id_column") else "row-1"
    return render(
        request,
        "batches/submission.html#preview",
        {
            "preview_json": json.dumps(
                {"custom_id": custom_id, "params": params}, indent=2, ensure_ascii=False
            )
            if params
            else "",
            "preview_problem": problem,
        },
    )


@require_POST
def submission_submit(request, slug, key):
    submission = _get_submission_for_user(request, slug, key)
    if submissions.request_submit(submission):
        tasks.submit_submission.delay_on_commit(submission.pk)
        messages.success(
            request,
            f"Submitting {submission.request_count:,} requests. The batch appears in the list "
            "as soon as the API has it.",
        )
    elif submission.state in (Submission.State.SUBMITTING, Submission.State.SUBMITTED):
        messages.info(request, "This file was already submitted; nothing was sent twice.")
    else:
        messages.error(request, "Fix the problems in the report before submitting.")
    return redirect(submission)


@require_GET
def submission_report(request, slug, key):
    submission = _get_submission_for_user(request, slug, key)
    if not submission.report_file:
        raise Http404("This file has no problems to report.")
    stem = submission.source_filename.rsplit(".", 1)[0]
    return FileResponse(
        submission.report_file.open("rb"),
        as_attachment=True,
        filename=f"{stem}-problems.csv",
        content_type="text/csv",
    )
