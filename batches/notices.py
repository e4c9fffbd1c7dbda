"""Telling people that a batch ended: a toast (and, opted in, a browser notification) for its
submitter on any open dashboard page, and the workspace's email and webhook.

Each is told once. The toast is shown by any page's poll until a page that showed it acknowledges
it (a POST that sets `Batch.end_notified_at`); the email and webhook are claimed on
`Batch.end_announced_at` by the Celery task that sends them, so two workers never send the same
notice twice.
"""

import logging
import smtplib
from collections.abc import Iterable
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, QuerySet
from django.urls import reverse
from django.utils import timezone

from batches import budgets, labels, roles, webhooks
from batches.models import Batch, BudgetNotice, Workspace
from batches.roles import Person

Event = webhooks.Event

logger = logging.getLogger(__name__)

# Batches found already ended long after they ended (a first sync of an old workspace) are not
# news: only batches that ended at most this long before the dashboard first saw them count.
NEWS_WINDOW = timedelta(minutes=30)
# Only batches that ended this recently are announced (email, webhook) or toasted. Every ended
# batch starts un-announced, so without this, turning email or the webhook on for a workspace
# (or a user coming back after days) would send one notice for every batch that ever ended, all
# at once. An hour covers a worker or a browser that was away for a while; older ends are history,
# shown in the lists, not news.
NOTICE_WINDOW = timedelta(hours=1)


def ended_news(now: datetime | None = None) -> QuerySet[Batch]:
    """Ended batches the dashboard saw end (or saw within moments of their end), lately."""
    now = now or timezone.now()
    return Batch.objects.filter(
        processing_status=Batch.Status.ENDED,
        ended_at__isnull=False,
        ended_at__gte=F("first_seen_at") - NEWS_WINDOW,
    ).filter(ended_at__gte=now - NOTICE_WINDOW)


def pending_toasts(user: Person, limit: int = 5) -> list[Batch]:
    """The user's batches that ended lately and that no page of theirs has shown yet. Read
    only: a page acknowledges what it showed (`acknowledge_toasts`), by a POST."""
    if not user.is_authenticated:
        return []
    # By id: a lookup by object wants the user model itself, not any AbstractBaseUser.
    return list(
        ended_news()
        .filter(submitted_by=user.pk, end_notified_at__isnull=True, workspace__members=user.pk)
        .select_related("workspace")
        .order_by("ended_at")[:limit]
    )


def acknowledge_toasts(user: Person, batch_pks: Iterable[int]) -> int:
    """Mark these of the user's ended batches as shown to them: no page toasts them again."""
    if not user.is_authenticated:
        return 0
    return Batch.objects.filter(
        pk__in=batch_pks, submitted_by=user.pk, end_notified_at__isnull=True
    ).update(end_notified_at=timezone.now())


def batch_link(batch: Batch) -> str:
    return settings.SITE_URL + reverse("batch_detail", args=[batch.workspace.slug, batch.api_id])


def webhook_payload(batch: Batch) -> dict:
    return {
        "id": batch.api_id,
        "name": batch.display_name,
        "labels": labels.names(batch),
        "workspace": batch.workspace.slug,
        "processing_status": batch.processing_status,
        "request_counts": batch.counts,
        "created_at": batch.created_at.isoformat(),
        "ended_at": batch.ended_at.isoformat() if batch.ended_at else None,
        "submitted_by": batch.submitted_by.get_username() if batch.submitted_by else None,
        "url": batch_link(batch),
    }


def batches_to_announce(workspace_pk: int) -> list[int]:
    return list(
        ended_news()
        .filter(workspace_id=workspace_pk, end_announced_at__isnull=True)
        .values_list("pk", flat=True)
    )


def announce(batch_pk: int, *, http: httpx.Client | None = None) -> dict:
    """Email the submitter and POST the webhook for one ended batch, once."""
    now = timezone.now()
    if not Batch.objects.filter(pk=batch_pk, end_announced_at__isnull=True).update(
        end_announced_at=now
    ):
        return {"skipped": True}
    batch = Batch.objects.select_related("workspace", "submitted_by").get(pk=batch_pk)
    workspace = batch.workspace
    sent = {"email": False, "webhook": False}
    user = batch.submitted_by
    if workspace.notify_email and user is not None and user.email:
        names = labels.names(batch)
        labelled = f"Labels: {', '.join(names)}.\n\n" if names else ""
        sent["email"] = _email(
            f"Batch ended: {batch.display_name}",
            f"Your batch {batch.display_name} ({batch.api_id}) in {workspace.name} has "
            f"ended: {batch.ended_summary}.\n\n{labelled}{batch_link(batch)}\n",
            [user.email],
            about=batch.api_id,
        )
    # A batch that ended after a cancel is announced as canceled.
    event = Event.BATCH_CANCELED if batch.cancel_initiated_at else Event.BATCH_ENDED
    sent["webhook"] = _webhook(workspace, event, webhook_payload(batch), http)
    return sent


def _email(subject: str, body: str, recipients: list[str], *, about: str) -> bool:
    """Send one notice by email; True when the mail server took it. A mail server that is down
    loses that notice, not the webhook or the sync."""
    # A line break in a subject (from a batch's name, say) would make the mail refuse it.
    subject = " ".join(subject.split())
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except (smtplib.SMTPException, OSError) as error:
        logger.warning("Email about %s failed: %s", about, error)
        return False
    return True


def _webhook(workspace: Workspace, event: str, data: dict, http: httpx.Client | None) -> bool:
    """Record an event for the workspace's webhook (when it has one) and make its first
    attempt now; a failed one is retried by the beat's sweep (batches.webhooks). True when
    that attempt was accepted."""
    delivery = webhooks.enqueue(workspace, event, data)
    return delivery is not None and webhooks.deliver(delivery.pk, http=http) == "delivered"


def announce_results(batch_pk: int, *, http: httpx.Client | None = None) -> bool:
    """The workspace's webhook for a batch whose results are now all stored."""
    batch = Batch.objects.select_related("workspace", "submitted_by").get(pk=batch_pk)
    payload = {**webhook_payload(batch), "results_stored": batch.results_ingested}
    return _webhook(batch.workspace, Event.RESULTS_INGESTED, payload, http)


def announce_budget(workspace_pk: int, *, http: httpx.Client | None = None) -> list[int]:
    """Tell a workspace that this month's spending reached 80% or 100% of its budget: its
    admins by email (when the workspace's email notices are on) and its webhook, once per
    threshold and month (a BudgetNotice row is the claim). Returns the thresholds told now."""
    workspace = Workspace.objects.get(pk=workspace_pk)
    if workspace.monthly_budget is None:
        return []
    status = budgets.budget_status(workspace)
    budget = workspace.monthly_budget
    told = []
    for threshold in BudgetNotice.THRESHOLDS:
        if status.spent < budget * threshold / 100:
            continue
        _, created = BudgetNotice.objects.get_or_create(
            workspace=workspace,
            month=status.month,
            threshold=threshold,
            defaults={"spent": status.spent, "budget": budget},
        )
        if not created:
            continue
        told.append(threshold)
        summary = (
            f"{workspace.name} has spent ${status.spent:,.2f} of its ${budget:,.2f} budget for "
            f"{status.month:%B %Y} ({threshold}% reached)"
        )
        link = settings.SITE_URL + reverse("workspace_usage", args=[workspace.slug])
        admins = roles.admins(workspace).select_related("user")
        emails = [membership.user.email for membership in admins if membership.user.email]
        if workspace.notify_email and emails:
            subject = f"Budget {threshold}% reached: {workspace.name}"
            _email(subject, f"{summary}.\n\n{link}\n", emails, about=workspace.slug)
        payload = {
            "workspace": workspace.slug,
            "month": status.month.strftime("%Y-%m"),
            "threshold_percent": threshold,
            "budget": str(budget),
            "spent": str(status.spent),
            "committed": str(status.committed),
            "url": link,
        }
        _webhook(workspace, Event.BUDGET_THRESHOLD, payload, http)
    return told
