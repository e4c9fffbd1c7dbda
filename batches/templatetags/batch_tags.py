"""Readable numbers, sizes, durations and status badges for the templates."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

STATUS_BADGES = {
    "in_progress": ("badge-info", "In progress"),
    "canceling": ("badge-warn", "Canceling"),
    "ended": ("badge-ok", "Ended"),
}
RESULT_BADGES = {
    "succeeded": ("badge-ok", "Succeeded"),
    "errored": ("badge-bad", "Errored"),
    "canceled": ("badge-neutral", "Canceled"),
    "expired": ("badge-warn", "Expired"),
}


@register.simple_tag
def status_badge(batch):
    """The API status as a coloured word; an ended batch says how it ended."""
    if batch.gone_at:
        return format_html('<span class="badge badge-neutral">Deleted</span>')
    css, label = STATUS_BADGES.get(batch.processing_status, ("badge-neutral", "Unknown"))
    if batch.processing_status == "ended":
        if batch.canceled and batch.cancel_initiated_at:
            css, label = "badge-neutral", "Canceled"
        elif batch.expired and not batch.succeeded and not batch.errored:
            css, label = "badge-warn", "Expired"
        elif batch.errored or batch.expired:
            css, label = "badge-warn", "Ended with problems"
    return format_html('<span class="badge {}">{}</span>', css, label)


@register.simple_tag
def result_badge(result_type):
    css, label = RESULT_BADGES.get(result_type, ("badge-neutral", result_type))
    return format_html('<span class="badge {}">{}</span>', css, label)


@register.filter
def duration(value) -> str:
    """A timedelta (or seconds) as `4 h 12 m`, `3 m 5 s`, `12 s`."""
    if value is None or value == "":
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 0:
        seconds = 0
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} m"
    if minutes:
        return f"{minutes} m {secs} s"
    return f"{secs} s"


@register.filter
def batch_duration(batch) -> str:
    end = batch.ended_at or timezone.now()
    return duration(end - batch.created_at)


@register.filter
def filesize(value) -> str:
    if value in (None, ""):
        return "—"
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@register.filter
def percent(part, whole) -> float:
    try:
        return round(100 * part / whole, 2) if whole else 0
    except (TypeError, ZeroDivisionError):
        return 0


@register.filter
def until(value: datetime) -> str:
    """`in 4 h 12 m` or `3 m ago`."""
    if not value:
        return "—"
    delta = value - timezone.now()
    if delta.total_seconds() >= 0:
        return f"in {duration(delta)}"
    return f"{duration(-delta)} ago"
