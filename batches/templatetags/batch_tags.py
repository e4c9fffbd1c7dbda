"""Readable numbers, sizes, durations and status badges for the templates."""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import template
from django.template import Context
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from batches import roles
from batches.models import Batch, Submission, Workspace

register = template.Library()

OUTCOME_BADGES = {
    "in_progress": ("badge-info", "In progress"),
    "canceling": ("badge-warn", "Canceling"),
    "ended": ("badge-ok", "Ended"),
    "canceled": ("badge-neutral", "Canceled"),
    "expired": ("badge-warn", "Expired"),
    "ended_with_problems": ("badge-warn", "Ended with problems"),
    "deleted": ("badge-neutral", "Deleted"),
}
RESULT_BADGES = {
    "succeeded": ("badge-ok", "Succeeded"),
    "errored": ("badge-bad", "Errored"),
    "canceled": ("badge-neutral", "Canceled"),
    "expired": ("badge-warn", "Expired"),
}


@register.simple_tag(takes_context=True)
def may(context: Context, workspace: Workspace, ability: str) -> bool:
    """`{% may workspace "submit" as can_submit %}`: whether the person viewing may (a page shows
    only what their role allows; the views check it again)."""
    return roles.may(context["request"].user, workspace, ability)


@register.simple_tag(takes_context=True)
def workspaces_where(
    context: Context, workspaces: Iterable[Workspace], ability: str
) -> list[Workspace]:
    """`{% workspaces_where workspaces "submit" as uploadable %}`: those the person may."""
    return roles.workspaces_where(context["request"].user, workspaces, ability)


@register.simple_tag(takes_context=True)
def role_in(context: Context, workspace: Workspace) -> str:
    role = roles.role_in(context["request"].user, workspace)
    return role.label if role else ""


@register.simple_tag
def status_badge(batch: Batch) -> SafeString:
    """How the batch stands or ended (`Batch.outcome`) as a coloured word."""
    css, label = OUTCOME_BADGES.get(batch.outcome, ("badge-neutral", "Unknown"))
    return format_html('<span class="badge {}">{}</span>', css, label)


@register.simple_tag
def result_badge(result_type: str) -> SafeString:
    css, label = RESULT_BADGES.get(result_type, ("badge-neutral", result_type))
    return format_html('<span class="badge {}">{}</span>', css, label)


@register.filter
def duration(value: timedelta | float | str | None) -> str:
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


def running_for(elapsed: timedelta | float) -> str:
    """A running batch's age (a timedelta or seconds) to the minute: a label that changes once a
    minute lets the polls answer 204 (nothing new) in between, and seconds tell nobody anything
    about a batch."""
    seconds = elapsed.total_seconds() if isinstance(elapsed, timedelta) else elapsed
    minutes = int(seconds) // 60
    return "under a minute" if minutes < 1 else duration(minutes * 60)


@register.filter
def batch_duration(batch: Batch) -> str:
    if batch.ended_at is None:
        return running_for(timezone.now() - batch.created_at)
    return duration(batch.ended_at - batch.created_at)


@register.filter
def filesize(value: float | str | None) -> str:
    if value in (None, ""):
        return "—"
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@register.filter
def percent(part: float, whole: float) -> float:
    try:
        return round(100 * part / whole, 2) if whole else 0
    except (TypeError, ZeroDivisionError):
        return 0


@register.filter
def negate(value: Decimal) -> Decimal:
    return -value


@register.filter
def share(value: float | Decimal | None) -> str:
    """A share (0.1234) as a percentage with two decimals: 12.34%."""
    if value is None:
        return ""
    try:
        return f"{float(value):.2%}"
    except (TypeError, ValueError):
        return ""


@register.filter
def budget_share(value: float | None) -> str:
    """A budget's share used, in words that stay readable far past it: 12.34%, 135%, or
    476 times the budget (never "47579.00%")."""
    if value is None:
        return ""
    if value < 1:
        return f"{value:.2%}"
    if value < 10:
        return f"{value:.0%}"
    return f"{value:,.0f} times the budget"


@register.filter
def until(value: datetime) -> str:
    """`in 4 h 12 m` or `3 m ago`."""
    if not value:
        return "—"
    delta = value - timezone.now()
    if delta.total_seconds() >= 0:
        return f"in {duration(delta)}"
    return f"{duration(-delta)} ago"


SUBMISSION_BADGES = {
    "needs_template": "badge-info",
    "checking": "badge-info",
    "stopped": "badge-warn",
    "has_problems": "badge-bad",
    "ready": "badge-ok",
    "submitting": "badge-info",
    "submitted": "badge-ok",
    "failed": "badge-bad",
}


@register.simple_tag
def submission_badge(submission: Submission) -> SafeString:
    css = SUBMISSION_BADGES.get(submission.state, "badge-neutral")
    return format_html('<span class="badge {}">{}</span>', css, submission.get_state_display())


@register.simple_tag
def money(value: Decimal | float | str | None) -> str:
    """Dollars: `$12.48`, and `$0.0031` for small amounts, so a cheap batch is not `$0.00`."""
    if value in (None, ""):
        return "—"
    from decimal import Decimal

    amount = Decimal(str(value))
    if amount and abs(amount) < Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


DAY = 24 * 3600
SEGMENTS = (
    ("succeeded", "seg-ok", "succeeded"),
    ("errored", "seg-bad", "errored"),
    ("expired", "seg-warn", "expired"),
    ("canceled", "seg-neutral", "canceled"),
)


@register.inclusion_tag("batches/_progress.html")
def progress_bar(batch: Batch, wide: bool = False) -> dict[str, Any]:
    """Counts where the API moves them; otherwise time elapsed against the 24 h expiry, said so."""
    total = batch.total or 0
    done = total - batch.processing
    segments, start = [], 0.0
    for name, css, label in SEGMENTS:
        count = getattr(batch, name)
        if count:
            width = percent(count, total)
            # SVG coordinates, written here rather than by floatformat (25 rows a page, four
            # segments a row: the filter was a fifth of the list's rendering time).
            segment = {"css": css, "label": label, "count": count, "x": f"{start:.2f}",
                       "width": f"{width:.2f}"}  # fmt: skip
            segments.append(segment)
            start += width
    context = {"batch": batch, "segments": segments, "wide": wide, "total": total, "done": done}
    if batch.is_active and not batch.gone_at and done == 0:
        elapsed = max(0, int((timezone.now() - batch.created_at).total_seconds()))
        context["time_width"] = f"{min(100.0, 100 * elapsed / DAY):.2f}"
        verb = "canceling" if batch.processing_status == "canceling" else "running"
        context["label"] = f"{verb} {running_for(elapsed)} of at most 24 h"
        context["by_time"] = True
    elif batch.is_active and not batch.gone_at:
        context["label"] = f"{done:,} of {total:,} done ({percent(done, total):.0f}%)"
    else:
        context["label"] = ", ".join(f"{s['count']:,} {s['label']}" for s in segments) or "empty"
    return context


@register.filter
def pretty_json(value: object) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


# What each stop reason means to a reader (the API's value is shown beside it).
STOP_REASONS = {
    "end_turn": "finished its answer",
    "max_tokens": "reached max_tokens: the answer is cut off",
    "stop_sequence": "reached one of the stop sequences",
    "tool_use": "asked to use a tool",
    "pause_turn": "paused a long turn (a server tool was still working): send the answer back "
    "as the last assistant message to let it continue",
    "refusal": "declined to answer",
}


@register.filter
def web_link(url: str | None) -> str:
    """An http(s) URL from an answer, to link to; "" for anything else (javascript:, data:)."""
    text = str(url or "")
    return text if text.lower().startswith(("https://", "http://")) and len(text) <= 2000 else ""


@register.filter
def stop_reason_words(reason: str | None) -> str:
    return STOP_REASONS.get(reason or "", "")


@register.filter
def blocks(content: object) -> list[dict[str, Any]]:
    """Message content as a list of blocks: a plain string becomes one text block."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [
            block if isinstance(block, dict) else {"type": "text", "text": str(block)}
            for block in content
        ]
    return [{"type": "unknown", "value": content}]


SAFE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


@register.filter
def image_src(block: dict[str, Any]) -> str:
    """A data: URL for a base64 image block of a known image type; empty otherwise."""
    import re

    source = block.get("source") or {}
    if source.get("type") != "base64" or source.get("media_type") not in SAFE_IMAGE_TYPES:
        return ""
    data = source.get("data") or ""
    if not re.fullmatch(r"[A-Za-z0-9+/=\s]+", data):
        return ""
    return f"data:{source['media_type']};base64,{data}"


@register.filter
def base64_size(data: str | None) -> int:
    return len(data or "") * 3 // 4


@register.filter
def intdot(value: int | float | Decimal | str | None) -> str:
    """Thousands separators for big integers (also Decimal-free ints from aggregates)."""
    if value is None:
        return "—"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "—"


@register.filter
def get_item[K, V](mapping: Mapping[K, V] | None, key: K) -> V | None:
    return (mapping or {}).get(key)


@register.simple_tag
def bar_width(share: float | None, before: float | None = 0.0) -> str:
    """The width (out of 100) of a bar's segment from `before` to `share`, both shares of the
    whole, kept inside the bar."""
    try:
        start = min(max(float(before or 0), 0.0), 1.0)
        end = min(max(float(share or 0), 0.0), 1.0)
    except (TypeError, ValueError):
        return "0"
    return f"{max(end - start, 0.0) * 100:.2f}"


@register.simple_tag
def time_zone() -> SafeString:
    """The viewer's time zone, named beside the times a page shows: its abbreviation now (CET,
    UTC, +03), the zone's full name on hover and to screen readers."""
    zone = timezone.get_current_timezone()
    abbreviation = timezone.localtime().tzname() or str(zone)
    return format_html('<abbr class="zone" title="Times in {}">{}</abbr>', str(zone), abbreviation)
