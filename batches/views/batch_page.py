"""One batch's page, and what can be done to it from there: cancel, delete, refresh, resubmit.

The actions are recorded on the batch and carried out by a worker (`batches.tasks`); the page
shows the action pending until it lands, polling once a second meanwhile.
"""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from batches import actions, labels, polling, roles, selectors
from batches.forms import BatchNameForm
from batches.models import Batch
from batches.operations import Refused
from batches.operations import batches as batch_operations
from batches.roles import Ability
from batches.views.access import AuthenticatedHttpRequest, batch_for, poll_key

DETAIL = "batches/batch_detail.html"
# The batches a person asked to remove from the dashboard, kept in their session (by the POST
# that asked): once the task has removed one, its page (polling, or reloaded) goes to the list
# and says so instead of answering 404. Read, never written, by the page.
REMOVED_SESSION_KEY = "removed_batches"
REMOVED_KEPT = 20


def _detail_context(
    request: HttpRequest,
    batch: Batch,
    dialog: str = "",
    key: tuple | None = None,
    name_form: BatchNameForm | None = None,
) -> dict:
    resubmit_counts = (
        actions.resubmit_counts(batch) if not batch.resubmit_unavailable_reason else {}
    )
    # The stored results say what there is to send again: none but successes, nothing.
    nothing_to_resubmit = (
        "Every request succeeded: there is nothing to resubmit."
        if resubmit_counts and not any(resubmit_counts.values())
        else ""
    )
    can = roles.abilities(request.user, batch.workspace)
    context = {
        "batch": batch,
        "still_changing": batch.still_changing,
        "estimate": selectors.estimate(batch),
        "errors": selectors.error_summary(batch) if batch.errored else [],
        "resubmit_counts": resubmit_counts,
        "resubmit_unavailable": batch.resubmit_unavailable_reason or nothing_to_resubmit,
        "resubmit_kinds": actions.RESUBMIT_KINDS,
        "dialog": dialog,
        "resubmissions": selectors.recent_resubmissions(batch),
        "can": can,
        "offers": actions.offered(batch, can),
        "name_form": name_form
        or BatchNameForm(initial={"name": batch.name, "labels": ", ".join(labels.names(batch))}),
    }
    return polling.render_region(request, DETAIL, "live", context, key)


def _removed(request: HttpRequest, slug: str, api_id: str) -> HttpResponse | None:
    """The answer for a batch this person had removed from the dashboard, or None."""
    name = (request.session.get(REMOVED_SESSION_KEY) or {}).get(f"{slug}/{api_id}")
    if name is None:
        return None
    messages.success(request, f"Deleted {name} from the API and from the dashboard.")
    target = reverse("home")
    if polling.is_fragment(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


@require_GET
def batch_detail(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    key = poll_key(request, "batch", slug)
    if polling.unchanged(request, key):
        return polling.nothing_new()
    try:
        batch = batch_for(request, slug, api_id)
    except Http404:
        response = _removed(request, slug, api_id)
        if response is None:
            raise
        return response
    context = _detail_context(request, batch, key=key)
    if polling.is_fragment(request):
        return polling.poll_answer(
            request, DETAIL, "live", context, still_changing=batch.still_changing, settles=False
        )
    return render(request, DETAIL, context)


def _confirm_page(request: HttpRequest, batch: Batch, dialog: str) -> HttpResponse:
    """The batch page with one action's confirmation open (the no-JavaScript path)."""
    return render(request, DETAIL, _detail_context(request, batch, dialog))


def _start_action(request: AuthenticatedHttpRequest, batch: Batch, action: str, done: str) -> bool:
    """Hand the action to a worker (operations.batches.start_action); the page shows it pending
    until it lands."""
    try:
        batch_operations.start_action(batch, action, request.user, request=request)
    except Refused as refused:
        messages.error(request, str(refused))
        return False
    messages.info(request, done)
    return True


@require_http_methods(["GET", "POST"])
def batch_cancel(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    batch = batch_for(request, slug, api_id, Ability.SUBMIT)
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
def batch_delete(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    batch = batch_for(request, slug, api_id, Ability.DELETE)
    if request.method == "GET":
        return _confirm_page(request, batch, "delete")
    keep = request.POST.get("keep_local") == "on"
    action = Batch.Action.DELETE if keep else Batch.Action.REMOVE
    where = "The copy here is kept." if keep else "The copy here goes too."
    started = _start_action(request, batch, action, f"Deleting {batch.display_name}. {where}")
    if started and not keep:
        removed = request.session.get(REMOVED_SESSION_KEY) or {}
        removed[f"{slug}/{api_id}"] = batch.display_name
        request.session[REMOVED_SESSION_KEY] = dict(list(removed.items())[-REMOVED_KEPT:])
    return redirect(batch.get_absolute_url())


@require_POST
def batch_rename(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    """A submitter names and labels a batch (any batch, one made outside the dashboard too)."""
    batch = batch_for(request, slug, api_id, Ability.SUBMIT)
    form = BatchNameForm(request.POST)
    if not form.is_valid():
        context = _detail_context(request, batch, name_form=form)
        return render(request, DETAIL, context, status=400)
    changed = batch_operations.rename(
        batch,
        request.user,
        form.cleaned_data["name"],
        form.cleaned_data["labels"],
        request=request,
    )
    if not changed:
        messages.info(request, "Nothing changed.")
        return redirect(batch.get_absolute_url())
    messages.success(request, "Saved the name and labels.")
    return redirect(batch.get_absolute_url())


@require_POST
def batch_refresh(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    batch = batch_for(request, slug, api_id, Ability.SUBMIT)
    _start_action(request, batch, Batch.Action.REFRESH, "Asking the API for this batch now.")
    return redirect(batch.get_absolute_url())


@require_http_methods(["GET", "POST"])
def batch_resubmit(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    batch = batch_for(request, slug, api_id, Ability.SUBMIT)
    if request.method == "GET":
        return _confirm_page(request, batch, "resubmit")
    try:
        submission = batch_operations.resubmit(
            batch, request.user, request.POST.getlist("kinds"), request=request
        )
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect(batch.get_absolute_url())
    messages.success(
        request,
        "The requests to resubmit are a new upload: it is checked now (invalid requests are "
        "flagged to fix before anything is sent), then you submit it.",
    )
    return redirect(submission.get_absolute_url())
