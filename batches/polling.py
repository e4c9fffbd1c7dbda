"""Regions of a page that poll for themselves, and the fingerprint that lets a poll answer 204.

A polled region is rendered from its template partial, and its fingerprint is a hash of exactly
that HTML (CSRF tokens aside: Django masks them differently on every render). The region carries
its fingerprint (`hx-vals`, sent back as `v`); a poll whose region would render the same HTML is
answered 204, which htmx does not swap. So a change to a template can never leave a poll stale:
what is compared is what would be shown.
"""

import hashlib
import re

from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django_htmx.http import HttpResponseStopPolling

CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def fingerprint(html: str) -> str:
    return hashlib.sha256(CSRF_VALUE.sub("", html).encode()).hexdigest()[:20]


def render_region(request, template: str, region: str, context: dict) -> dict:
    """Render the region's content (`template#region_content`) and add it, with its
    fingerprint, to `context` as `region_html` and `fingerprint`."""
    html = render_to_string(f"{template}#{region}_content", context, request=request)
    context["region_html"] = mark_safe(html)  # noqa: S308 (our own template's output)
    context["fingerprint"] = fingerprint(html)
    return context


def poll_answer(request, template: str, region: str, context: dict, *, still_changing: bool):
    """The answer to a poll of a region: 204 while what it shows is current, the region (with
    286, which stops the poll) once it can no longer change, else the region."""
    if request.GET.get("v") == context["fingerprint"] and still_changing:
        return HttpResponse(status=204)
    context["still_changing"] = still_changing
    response = HttpResponse(render_to_string(f"{template}#{region}", context, request=request))
    if not still_changing:
        response.status_code = HttpResponseStopPolling.status_code
    return response
