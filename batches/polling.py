"""Regions of a page that poll for themselves, and how a poll knows nothing changed.

A polled region is rendered from its template partial, and its fingerprint is a hash of exactly
that HTML (CSRF tokens aside: Django masks them differently on every render). The region carries
its fingerprint (`hx-vals`, sent back as `v`); a poll whose region would render the same HTML is
answered 204, which htmx does not swap. What is compared is what would be shown, so a change to
a template can never leave a poll stale.

Rendering to find out costs a page's queries, so each process remembers the fingerprint it last
rendered for a region under a key of everything the HTML depends on: the viewer, the region and
its query, the change stamps of the workspaces it shows (batches/changes.py), the minute (time
labels are to the minute) and the templates' generation (bumped when templates reload). A poll
whose key is remembered with the fingerprint it sent is answered 204 before any query of the
page runs.
"""

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.autoreload import file_changed
from django.utils.safestring import mark_safe
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from batches import changes

CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')
MEMO_SIZE = 20_000


def fingerprint(html: str) -> str:
    return hashlib.sha256(CSRF_VALUE.sub("", html).encode()).hexdigest()[:20]


def is_fragment(request: HttpRequest) -> bool:
    """An HTMX request for a region (not a boosted page load)."""
    # HtmxMiddleware gives every request its `htmx`, which HttpRequest's type does not name.
    htmx: HtmxDetails = getattr(request, "htmx")  # noqa: B009
    return bool(htmx) and not htmx.boosted


# What each process remembers ----------------------------------------------------------------------


class _Memo:
    """Fingerprints by key, the newest MEMO_SIZE kept; shared by a process's threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.generation = 0
        self._items: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.generation += 1


_memo = _Memo(MEMO_SIZE)


def forget_all() -> None:
    _memo.clear()


@receiver(setting_changed)
def _templates_changed(setting: str, **kwargs: object) -> None:
    if setting == "TEMPLATES":
        forget_all()


@receiver(file_changed)
def _file_changed(sender: object, file_path: Path, **kwargs: object) -> None:
    # The development server reloads templates in place: what was remembered may be stale.
    forget_all()


def region_key(
    request: HttpRequest, region: str, workspace_ids: Iterable[int], *extra: object
) -> tuple | None:
    """The key a region's fingerprint is remembered under, or None when it cannot be known
    without the database (a stamp the cache lacks)."""
    stamps = changes.stamps(workspace_ids)
    if stamps is None:
        return None
    query = tuple(sorted((k, v) for k, v in request.GET.items() if k != "v"))
    # Each viewer's minute starts at a second of its own: labels are to the minute either way,
    # and the viewers' regions are not all rendered again in the same second (a burst that was
    # the slowest 5% of polls under load).
    minute = int((time.time() + (request.user.pk or 0) % 60) // 60)
    return (region, request.user.pk, request.path, query, stamps, minute, _memo.generation, extra)


def unchanged(request: HttpRequest, key: tuple | None) -> bool:
    """The poll's fingerprint is the one remembered for this key: nothing it shows changed."""
    sent = request.GET.get("v")
    return bool(key is not None and sent and _memo.get(key) == sent)


def remember(key: tuple | None, value: str) -> None:
    if key is not None:
        _memo.put(key, value)


# Rendering and answering -----------------------------------------------------------------------


def render_region(
    request: HttpRequest, template: str, region: str, context: dict, key: tuple | None = None
) -> dict:
    """Render the region's content (`template#region_content`) and add it, with its
    fingerprint, to `context` as `region_html` and `fingerprint` (remembered under `key`)."""
    html = render_to_string(f"{template}#{region}_content", context, request=request)
    context["region_html"] = mark_safe(html)  # noqa: S308 (our own template's output)
    context["fingerprint"] = fingerprint(html)
    remember(key, context["fingerprint"])
    return context


def poll_answer(
    request: HttpRequest,
    template: str,
    region: str,
    context: dict,
    *,
    still_changing: bool,
    settles: bool = True,
) -> HttpResponse:
    """The answer to a poll of a region: 204 while what it shows is current, else the region. A
    region that `settles` stops polling (286) once it can no longer change; one that does not
    (the batch page: deleted or refreshed from another page at any time) polls while open."""
    if request.GET.get("v") == context["fingerprint"] and (still_changing or not settles):
        return HttpResponse(status=204)
    context["still_changing"] = still_changing
    response = announce(
        HttpResponse(render_to_string(f"{template}#{region}", context, request=request))
    )
    if settles and not still_changing:
        response.status_code = HttpResponseStopPolling.status_code
    return response


# A polled region that shows something new says so, and the header's counter (which polls slowly
# while nothing runs) asks at once: the page never shows a new batch beside an old count.
REGION_CHANGED = "region-changed"


def announce(response: HttpResponse) -> HttpResponse:
    response["HX-Trigger"] = REGION_CHANGED
    return response


def nothing_new() -> HttpResponse:
    return HttpResponse(status=204)
