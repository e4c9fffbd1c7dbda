"""What every page's header carries: the running counter, finished-batch toasts, and the
browser-notification preference."""

from collections.abc import Sequence

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from batches import notices, polling, selectors
from batches.models import Batch, UserPreference
from batches.views.access import AuthenticatedHttpRequest, poll_key

POLL = "batches/_poll.html"


@require_GET
def poll(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The layout's poll: the running counter, plus a toast for each of the user's batches that
    ended and that no page has shown them yet (out of band). When what it shows changed since
    the page last saw it, the `batches-changed` event tells the batch list to reload, so new
    batches appear.

    The counter polls every 5 s while a batch runs or an upload is being submitted, and every 30 s
    while nothing is (the template picks; a page's counter also polls once as it loads, and when
    a polled region of the page showed something new). It never stops with 286: a toast waits
    for it. Nothing new
    is answered 204, which htmx does not swap, so an idle page costs one empty answer every 30 s,
    and no query once the answer is remembered (see batches/polling.py)."""
    key = poll_key(request, "header", always=True)
    if polling.unchanged(request, key):
        return polling.nothing_new()
    toasts = notices.pending_toasts(request.user)
    header = header_state(request, toasts)
    polling.remember(key, header["fingerprint"])
    if request.GET.get("v") == header["fingerprint"]:
        return polling.nothing_new()
    preference = selectors.preference(request.user) if toasts else None
    response = render(request, POLL, {"header": header, "toasts": toasts, "preference": preference})
    # Something changed (a batch started or ended, an upload went in): the list reloads itself.
    response["HX-Trigger"] = "batches-changed"
    return response


def header_state(
    request: HttpRequest, toasts: Sequence[Batch] = (), *, polled: bool = True
) -> dict:
    """What the counter shows, and its fingerprint: of the counter as rendered, and of the
    toasts that come with it."""
    counts = selectors.header_counts(request.user)
    state = {**counts, "polled": True, "fingerprint": "", "trigger": _trigger(counts, polled=True)}
    # Taken of the counter as a poll sends it, so a page's own first poll can be a 204.
    html = render_to_string(f"{POLL}#counter", {"header": state}, request=request)
    if toasts:
        html += render_to_string(f"{POLL}#toasts", {"toasts": toasts}, request=request)
    return {**state, "polled": polled, "fingerprint": polling.fingerprint(html),
            "trigger": _trigger(counts, polled=polled)}  # fmt: skip


def _trigger(counts: dict, *, polled: bool) -> str:
    """When the counter polls: fast while something runs, slowly while nothing does (and once
    as an idle page loads), and whenever a polled region of the page showed something new."""
    if counts["running"] or counts["submitting"]:
        timing = "every 5s"
    else:
        timing = "every 30s" if polled else "load, every 30s"
    return f"{timing}, {polling.REGION_CHANGED} from:body"


def header_context(request: HttpRequest) -> dict:
    """Context processor: the header's counter for any page that renders it (lazily: a page
    that does not, such as a fragment, runs no query for it)."""
    if not request.user.is_authenticated:
        return {}
    return {"header": SimpleLazyObject(lambda: header_state(request, polled=False))}


@require_POST
def acknowledge_toasts(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A page showed these finished-batch toasts: no page shows them again."""
    ids = [
        value
        for value in request.POST.getlist("batch")
        if value.isascii() and value.isdigit() and len(value) <= 18
    ]
    notices.acknowledge_toasts(request.user, [int(value) for value in ids[:50]])
    return HttpResponse(status=204)


@require_POST
def notification_preference(request: AuthenticatedHttpRequest) -> HttpResponse:
    preference = UserPreference.for_user(request.user)
    preference.browser_notifications = request.POST.get("enabled") == "on"
    preference.save(update_fields=["browser_notifications"])
    if polling.is_fragment(request):
        return render(request, "batches/home.html#notify_toggle", {"preference": preference})
    state = "on" if preference.browser_notifications else "off"
    messages.success(request, f"Browser notifications are {state}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "home"  # never send the user on to another site
    return redirect(target)
