"""The dashboard's pages: batch list, one batch, its results, one result, actions and downloads.

Pages read the database only; the actions (cancel, delete, refresh now, resubmit) go through
`batches.actions`. A page and its HTMX fragments come from one template: an HTMX request (not
boosted) gets the page's `{% partialdef %}` region, and a poll of something that can no longer
change is answered with 286, which stops it.
"""

import gzip
import hashlib
import json
import re
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Max, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from batches import actions, downloads, notices, polling, summaries, tasks
from batches.models import Batch, BatchRequest, Result, Submission, UserPreference, Workspace
from batches.templatetags.batch_tags import batch_duration, progress_bar
from dashboard.storage import stream

BATCHES_PER_PAGE = 25
RESULTS_PER_PAGE = 50
# A stored results file bigger than this (gzipped) is not scanned for one result's raw line: the
# line is rebuilt from the stored Result instead. Scanning runs at about 5 ms per MB unzipped, and
# results zip 3 to 5 times, so the scan stays under about 0.2 s.
RAW_SCAN_MAX_BYTES = 8 * 1024 * 1024
STATUS_FILTERS = {
    "active": "Running (in progress or canceling)",
    "in_progress": "In progress",
    "canceling": "Canceling",
    "ended": "Ended",
    "canceled": "Canceled",
    "deleted": "Deleted from the API",
}
PROBLEM_FILTERS = {
    "any": "Has errored or expired requests",
    "errored": "Has errored requests",
    "expired": "Has expired requests",
    "none": "No problems",
}


def _get_workspace_for_user(request, slug) -> Workspace:
    return get_object_or_404(Workspace.objects.visible_to(request.user), slug=slug)


def _get_batch_for_user(request, slug, api_id) -> Batch:
    if "\x00" in api_id:
        raise Http404  # PostgreSQL refuses NUL in a string: no such batch, not a 500
    batches = Batch.objects.visible_to(request.user).select_related(
        "workspace", "submitted_by", "submission", "submission_part"
    )
    return get_object_or_404(batches, workspace__slug=slug, api_id=api_id)


def _get_result(batch, custom_id) -> Result:
    if "\x00" in custom_id:
        raise Http404
    return get_object_or_404(Result, batch=batch, custom_id=custom_id)


def _partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _text(params, name: str, limit: int = 200) -> str:
    """A query-string value as plain text: no NUL (PostgreSQL refuses it), at most `limit` long."""
    return params.get(name, "").replace("\x00", "").strip()[:limit]


# What a poll compares ---------------------------------------------------------------------------
# A polled region carries a fingerprint of what it shows (`hx-vals`, sent back as `v`); a poll
# whose fingerprint is still current is answered 204, which htmx does not swap. Time labels are
# part of it as the page shows them ("running 3 m 5 s", "in 4 h 12 m"), so it changes no more
# often than the text does: every poll in a batch's first hour, once a minute after that.


def _fingerprint(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def _shown_state(batch: Batch) -> tuple:
    """What the list row and the batch page show of a batch, time labels included."""
    bar = progress_bar(batch)
    return (
        batch.pk,
        batch.name,
        batch.processing_status,
        tuple(batch.counts.values()),
        batch.cancel_initiated_at,
        batch.ended_at,
        batch.archived_at,
        batch.gone_at,
        batch.results_ingested_at,
        batch.results_ingested,
        batch.totals_at,
        getattr(batch, "cost", None),
        getattr(batch, "cost_incomplete", None),
        bar["label"],
        floatformat(bar.get("time_width", ""), "1u"),  # as _progress.html draws it
        batch_duration(batch),
    )


def _unchanged(request, fingerprint: str) -> bool:
    return _partial(request) and request.GET.get("v") == fingerprint


# The batch list ---------------------------------------------------------------------------------


def _filter_batches(batches, params, *, fixed_workspace=None) -> tuple:
    """Apply the list's filters from the query string; returns (queryset, the filters in use)."""
    chosen = {
        "workspace": "" if fixed_workspace else _text(params, "workspace", 50),
        "status": _text(params, "status", 20),
        "problems": _text(params, "problems", 20),
        "submitter": _text(params, "submitter", 20),
        "q": _text(params, "q"),
    }
    if chosen["workspace"]:
        batches = batches.filter(workspace__slug=chosen["workspace"])
    status = chosen["status"]
    if status == "active":
        batches = batches.active().filter(gone_at=None)
    elif status in ("in_progress", "canceling"):
        batches = batches.filter(processing_status=status, gone_at=None)
    elif status == "ended":
        batches = batches.filter(processing_status=Batch.Status.ENDED, gone_at=None)
    elif status == "canceled":
        batches = batches.filter(cancel_initiated_at__isnull=False)
    elif status == "deleted":
        batches = batches.filter(gone_at__isnull=False)
    problems = chosen["problems"]
    if problems == "any":
        batches = batches.filter(summaries.has_problems_filter())
    elif problems == "errored":
        batches = batches.filter(errored__gt=0)
    elif problems == "expired":
        batches = batches.filter(expired__gt=0)
    elif problems == "none":
        batches = batches.filter(errored=0, expired=0)
    submitter = chosen["submitter"]
    if submitter == "outside":
        batches = batches.filter(submitted_by=None)
    elif re.fullmatch(r"[0-9]{1,18}", submitter):  # not isdigit(): "²" is a digit int() refuses
        batches = batches.filter(submitted_by_id=int(submitter))
    if chosen["q"]:
        q = chosen["q"]
        batches = batches.filter(
            Q(name__icontains=q) | Q(api_id__icontains=q) | Q(source_filename__icontains=q)
        )
    return batches, chosen


def _batch_list(request, *, workspace=None, template="batches/home.html"):
    workspaces = Workspace.objects.visible_to(request.user)
    batches = Batch.objects.visible_to(request.user)
    if workspace is not None:
        batches = batches.filter(workspace=workspace)
    batches, chosen = _filter_batches(batches, request.GET, fixed_workspace=workspace)
    batches = batches.select_related("workspace", "submitted_by", "submission").order_by(
        "-created_at", "-id"
    )
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    any_active = any(batch.is_active and not batch.gone_at for batch in rows)
    fingerprint = _fingerprint(
        page.number, page.paginator.count, [_shown_state(batch) for batch in rows]
    )
    if any_active and _unchanged(request, fingerprint):
        return HttpResponse(status=204)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("v", None)
    context = {
        "page": page,
        "rows": rows,
        "workspace": workspace,
        "any_active": any_active,
        "filters": chosen,
        "filtering": any(chosen.values()),
        "query": query.urlencode(),
        "fingerprint": fingerprint,
        "status_filters": STATUS_FILTERS,
        "problem_filters": PROBLEM_FILTERS,
    }
    if _partial(request):
        response = render(request, f"{template}#batch_list", context)
        if not any_active:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    context["workspaces"] = [workspace] if workspace else list(workspaces)
    if workspace is None:
        context["preference"] = _preference(request.user)
    submitters = (
        get_user_model()
        .objects.filter(submitted_batches__workspace__in=workspaces)
        .distinct()
        .order_by("username")
    )
    context["submitters"] = list(submitters)
    context["has_workspaces"] = bool(context["workspaces"])
    return render(request, template, context)


@require_GET
def home(request):
    return _batch_list(request)


@require_GET
def workspace_list(request):
    workspaces = Workspace.objects.visible_to(request.user).annotate(
        batch_count=Count("batches", filter=Q(batches__gone_at=None)),
        active_count=Count(
            "batches",
            filter=Q(batches__gone_at=None, batches__processing_status__in=Batch.ACTIVE),
        ),
    )
    return render(request, "batches/workspace_list.html", {"workspaces": workspaces})


@require_GET
def workspace_batches(request, slug):
    workspace = _get_workspace_for_user(request, slug)
    return _batch_list(request, workspace=workspace, template="batches/workspace_batches.html")


# The header's counter, and finished-batch toasts --------------------------------------------------


def _preference(user) -> UserPreference:
    """The user's preferences, read only (one query; defaults when none are stored)."""
    return UserPreference.objects.filter(user=user).first() or UserPreference(user=user)


def counter_state(user) -> tuple[int, str]:
    """The header's running count, and what its poll compares: that count and the newest batch's
    id, so a batch created (say, by a script) and ended between two polls still counts as news.
    One query."""
    totals = Batch.objects.visible_to(user).aggregate(
        running=Count("pk", filter=Q(processing_status__in=Batch.ACTIVE, gone_at=None)),
        newest=Max("pk"),
    )
    return totals["running"], f"{totals['running']}.{totals['newest'] or 0}"


def submitting(user) -> bool:
    """An upload is being turned into batches: they will appear in the list any moment."""
    return Submission.objects.filter(
        workspace__in=Workspace.objects.visible_to(user), state=Submission.State.SUBMITTING
    ).exists()


@require_GET
def poll(request):
    """The layout's poll: the running counter, plus a toast for each of the user's batches that
    ended since it was last told (out of band). When the count changed since the page last saw
    it, the `batches-changed` event tells the batch list to reload, so new batches appear.

    The counter polls every 5 s while a batch runs or an upload is being submitted, and every 30 s
    while nothing is (the template picks; a page's counter also polls once as it loads). It never
    stops with 286: a batch created from a script or another tab shows up only through this poll
    (the list's own poll has stopped when nothing runs), and a toast waits for it too. Nothing new
    (same count, same submitting, no toast) is answered 204, which htmx does not swap, so an idle
    page costs one empty answer every 30 s."""
    toasts = notices.take_toasts(request.user)
    running, state = counter_state(request.user)
    busy = submitting(request.user)
    seen = (request.GET.get("seen"), request.GET.get("submitting") == "1")
    if seen == (state, busy) and not toasts:
        return HttpResponse(status=204)
    context = {
        "running": running,
        "state": state,
        "submitting": busy,
        "polled": True,
        "toasts": toasts,
        "preference": _preference(request.user) if toasts else None,
    }
    response = render(request, "batches/_poll.html", context)
    # Something changed (a batch started or ended, an upload went in): the list reloads itself.
    response["HX-Trigger"] = "batches-changed"
    return response


@require_POST
def notification_preference(request):
    preference = UserPreference.for_user(request.user)
    preference.browser_notifications = request.POST.get("enabled") == "on"
    preference.save(update_fields=["browser_notifications"])
    if _partial(request):
        return render(request, "batches/home.html#notify_toggle", {"preference": preference})
    state = "on" if preference.browser_notifications else "off"
    messages.success(request, f"Browser notifications are {state}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "home"  # never send the user on to another site
    return redirect(target)


# One batch --------------------------------------------------------------------------------------
DETAIL = "batches/batch_detail.html"
# The batches a person asked to remove from the dashboard, kept in their session: once the task
# has removed one, its page (polling, or reloaded) goes to the list and says so instead of 404.
REMOVED_SESSION_KEY = "removed_batches"


def _detail_context(request, batch: Batch, dialog: str = "") -> dict:
    resubmit_reason = actions.resubmit_unavailable_reason(batch)
    context = {
        "batch": batch,
        "still_changing": batch.still_changing,
        "estimate": summaries.estimate(batch),
        "errors": summaries.error_summary(batch) if batch.errored else [],
        "resubmit_reason": resubmit_reason,
        "resubmit_counts": actions.resubmit_counts(batch) if not resubmit_reason else {},
        "resubmit_kinds": actions.RESUBMIT_KINDS,
        "can_append": downloads.can_append_to_upload(batch),
        "dialog": dialog,
        "resubmissions": list(batch.resubmissions.order_by("-created_at")[:5]),
    }
    return polling.render_region(request, DETAIL, "live", context)


def _removed(request, slug, api_id):
    """The answer for a batch this person had removed from the dashboard, or None."""
    removed = request.session.get(REMOVED_SESSION_KEY) or {}
    name = removed.pop(f"{slug}/{api_id}", None)
    if name is None:
        return None
    request.session[REMOVED_SESSION_KEY] = removed
    messages.success(request, f"Deleted {name} from the API and from the dashboard.")
    target = reverse("home")
    if _partial(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


@require_GET
def batch_detail(request, slug, api_id):
    try:
        batch = _get_batch_for_user(request, slug, api_id)
    except Http404:
        response = _removed(request, slug, api_id)
        if response is None:
            raise
        return response
    context = _detail_context(request, batch)
    if _partial(request):
        return polling.poll_answer(
            request, DETAIL, "live", context, still_changing=batch.still_changing
        )
    return render(request, DETAIL, context)


def _confirm_page(request, batch, dialog):
    """The batch page with one action's confirmation open (the no-JavaScript path)."""
    return render(request, DETAIL, _detail_context(request, batch, dialog))


def _start_action(request, batch: Batch, action: str, done: str):
    """Record the action and hand it to a worker; the page shows it pending until it lands."""
    try:
        with transaction.atomic():
            actions.request_action(batch, action)
            tasks.run_batch_action.delay_on_commit(batch.pk)
    except actions.ActionRefused as refused:
        messages.error(request, str(refused))
        return False
    messages.info(request, done)
    return True


@require_http_methods(["GET", "POST"])
def batch_cancel(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    if request.method == "GET":
        return _confirm_page(request, batch, "cancel")
    _start_action(
        request,
        batch,
        Batch.Action.CANCEL,
        f"Canceling {batch.display_name}. Requests already done keep their results; the rest "
        "end as canceled. The page shows it when the API confirms.",
    )
    return redirect(batch.get_absolute_url())


@require_http_methods(["GET", "POST"])
def batch_delete(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    if request.method == "GET":
        return _confirm_page(request, batch, "delete")
    keep = request.POST.get("keep_local") == "on"
    action = Batch.Action.DELETE if keep else Batch.Action.REMOVE
    where = "The copy here is kept." if keep else "The copy here goes too."
    if (
        _start_action(request, batch, action, f"Deleting {batch.display_name}. {where}")
        and not keep
    ):
        removed = request.session.get(REMOVED_SESSION_KEY) or {}
        removed[f"{slug}/{api_id}"] = batch.display_name
        request.session[REMOVED_SESSION_KEY] = removed
    return redirect(batch.get_absolute_url())


@require_POST
def batch_refresh(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    _start_action(request, batch, Batch.Action.REFRESH, "Asking the API for this batch now.")
    return redirect(batch.get_absolute_url())


@require_http_methods(["GET", "POST"])
def batch_resubmit(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    if request.method == "GET":
        return _confirm_page(request, batch, "resubmit")
    try:
        with transaction.atomic():
            submission = actions.resubmit(batch, request.user, request.POST.getlist("kinds"))
            tasks.check_submission.delay_on_commit(submission.pk)
    except (actions.ActionRefused, ValueError) as refused:
        messages.error(request, str(refused))
        return redirect(batch.get_absolute_url())
    messages.success(
        request,
        "The requests to resubmit are a new upload: it is checked now (invalid requests are "
        "flagged to fix before anything is sent), then you submit it.",
    )
    return redirect(submission.get_absolute_url())


# Results ----------------------------------------------------------------------------------------


def _explorer_filters(request, batch) -> tuple:
    params = request.GET
    chosen = {
        "type": _text(params, "type", 20),
        "error_type": _text(params, "error_type", 64),
        "stop_reason": _text(params, "stop_reason", 32),
        "q": _text(params, "q"),
    }
    results = Result.objects.filter(batch=batch)
    if chosen["type"] in Result.Type.values:
        results = results.filter(result_type=chosen["type"])
    else:
        chosen["type"] = ""
    if chosen["error_type"]:
        results = results.filter(result_type=Result.Type.ERRORED, error_type=chosen["error_type"])
    if chosen["stop_reason"]:
        results = results.filter(stop_reason=chosen["stop_reason"])
    if chosen["q"]:
        q = chosen["q"]
        results = results.filter(
            Q(custom_id__icontains=q) | Q(answer_text__icontains=q) | Q(error_message__icontains=q)
        )
    return results, chosen


@require_GET
def batch_results(request, slug, api_id):
    """Results in custom_id order, paged by key (`after`/`before` a custom_id) on the unique
    (batch, custom_id) index, so page 2,000 costs what page 1 does."""
    batch = _get_batch_for_user(request, slug, api_id)
    results, chosen = _explorer_filters(request, batch)
    results = results.only(
        "custom_id",
        "result_type",
        "error_type",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "answer_text",
        "error_message",
    )
    after, before = _text(request.GET, "after"), _text(request.GET, "before")
    if before:
        rows = list(
            results.filter(custom_id__lt=before).order_by("-custom_id")[: RESULTS_PER_PAGE + 1]
        )
        has_previous = len(rows) > RESULTS_PER_PAGE
        rows = rows[:RESULTS_PER_PAGE][::-1]
        has_next = True
    else:
        if after:
            results = results.filter(custom_id__gt=after)
        rows = list(results.order_by("custom_id")[: RESULTS_PER_PAGE + 1])
        has_next = len(rows) > RESULTS_PER_PAGE
        rows = rows[:RESULTS_PER_PAGE]
        has_previous = bool(after)
    query = {key: value for key, value in chosen.items() if value}
    context = {
        "batch": batch,
        "results": rows,
        "result_type": chosen["type"],
        "filters": chosen,
        "filtering": bool(query),
        "query": urlencode(query),
        "result_types": Result.Type.choices,
        "has_next": has_next and bool(rows),
        "has_previous": has_previous and bool(rows),
        "first_id": rows[0].custom_id if rows else "",
        "last_id": rows[-1].custom_id if rows else "",
    }
    if _partial(request):
        return render(request, "batches/batch_results.html#results", context)
    context["facets"] = summaries.facet_counts(batch)
    return render(request, "batches/batch_results.html", context)


def _request_for(batch: Batch, custom_id: str) -> BatchRequest | None:
    if batch.submission_id is None:
        return None
    return BatchRequest.objects.filter(
        submission_id=batch.submission_id, custom_id=custom_id
    ).first()


@require_GET
def result_detail(request, slug, api_id, custom_id):
    batch = _get_batch_for_user(request, slug, api_id)
    result = _get_result(batch, custom_id)
    siblings = Result.objects.filter(batch=batch).values_list("custom_id", flat=True)
    previous_id = siblings.filter(custom_id__lt=custom_id).order_by("-custom_id").first()
    next_id = siblings.filter(custom_id__gt=custom_id).order_by("custom_id").first()
    batch_request = _request_for(batch, custom_id)
    cost = None
    if result.result_type == Result.Type.SUCCEEDED:
        from batches.pricing import usage_cost

        cost = usage_cost(
            result.model,
            {name: getattr(result, name) for name in summaries.USAGE_FIELDS},
        )
    context = {
        "batch": batch,
        "result": result,
        "params": batch_request.load()["params"] if batch_request else None,
        "batch_request": batch_request,
        "previous_id": previous_id,
        "next_id": next_id,
        "cost": cost,
    }
    return render(request, "batches/result_detail.html", context)


def _raw_line(batch: Batch, custom_id: str) -> dict | None:
    """The result's line as the API sent it, found in the stored results file: unzipped as a
    stream, line by line, up to the first match (constant memory). None when the file is not kept
    or too big to scan on a click; the caller then rebuilds the line from the stored Result."""
    if not batch.results_file:
        return None
    needle = f'"{custom_id}"'.encode()
    try:
        if batch.results_file.size > RAW_SCAN_MAX_BYTES:
            return None
        with (
            stream(batch.results_file.name, storage=batch.results_file.storage) as stored,
            gzip.GzipFile(fileobj=stored) as handle,
        ):
            for line in handle:
                if needle in line:
                    item = json.loads(line)
                    if item.get("custom_id") == custom_id:
                        return item
    except (OSError, ValueError, EOFError):
        return None
    return None


@require_GET
def result_raw(request, slug, api_id, custom_id):
    batch = _get_batch_for_user(request, slug, api_id)
    result = _get_result(batch, custom_id)
    item = _raw_line(batch, custom_id)
    source = "the results file as the API sent it"
    if item is None:
        source = "rebuilt from the stored result (the raw file is not kept, or too big to search)"
        item = {"custom_id": result.custom_id, "result": {"type": result.result_type}}
        if result.content is not None:
            item["result"]["message"] = {
                "model": result.model,
                "content": result.content,
                "stop_reason": result.stop_reason or None,
                "usage": {name: getattr(result, name) for name in summaries.USAGE_FIELDS},
            }
        if result.error_type:
            item["result"]["error"] = {
                "type": "error",
                "error": {"type": result.error_type, "message": result.error_message},
            }
    batch_request = _request_for(batch, custom_id)
    context = {
        "source": source,
        "raw": json.dumps(item, indent=2, ensure_ascii=False),
        "request_raw": json.dumps(batch_request.load(), indent=2, ensure_ascii=False)
        if batch_request
        else "",
    }
    return render(request, "batches/result_detail.html#raw", context)


# Downloads --------------------------------------------------------------------------------------


@require_GET
def download_jsonl(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    if not batch.results_file:
        raise Http404("The results file is not stored.")
    return downloads.attachment(
        downloads.raw_jsonl(batch),
        downloads.filename(batch, "-results.jsonl"),
        "application/x-ndjson",
    )


@require_GET
def download_csv(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    if batch.results_ingested_at is None and not batch.results_ingested:
        raise Http404("The results are not stored yet.")
    return downloads.attachment(
        downloads.flat_csv(batch),
        downloads.filename(batch, "-results.csv"),
        "text/csv; charset=utf-8",
    )


@require_GET
def download_answers(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    if not downloads.can_append_to_upload(batch):
        raise Http404("This batch did not come from a CSV upload that is still stored.")
    return downloads.attachment(
        downloads.csv_with_answers(batch),
        downloads.filename(batch, "-with-answers.csv"),
        "text/csv; charset=utf-8",
    )
