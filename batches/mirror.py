"""The mirror: list each workspace's batches, store what changed, refresh the active ones.

Every function here is safe to run twice at once: a sync claims its workspace (a lease it renews
as it goes, see batches.claims), and every write is an upsert that changes nothing when nothing
changed. Storing the results of a batch that ended is `batches.ingestion`.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from batches import audit
from batches.claims import Claim
from batches.client import ApiClient, ApiError
from batches.models import AuditEntry, Batch, Workspace

logger = logging.getLogger(__name__)

# Ids are compared in Python and written in slices this size, under every database's limit on
# query parameters (SQLite's is 32,766).
ID_SLICE = 5000
MODELS_REFRESH = timedelta(hours=1)
# The API's largest page: a workspace of 5,000 batches lists in five calls.
LIST_PAGE = 1000


@dataclass
class SyncReport:
    workspace: str
    skipped: bool = False
    listed: int = 0
    created: int = 0
    updated: int = 0
    refreshed: int = 0
    gone: int = 0
    to_ingest: list[int] = field(default_factory=list)
    error: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.workspace}: skipped (another sync holds it)"
        if self.error:
            return f"{self.workspace}: failed: {self.error}"
        return (
            f"{self.workspace}: {self.listed} listed, {self.created} new, {self.updated} changed, "
            f"{self.refreshed} refreshed, {self.gone} gone, {len(self.to_ingest)} to ingest"
        )


def _next_poll(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)


def upsert_batches(workspace: Workspace, items: list[dict], now: datetime) -> tuple[int, int]:
    """Store a page of MessageBatch objects; write only what changed. Returns (created, updated)."""
    incoming = {item["id"]: Batch.fields_from_api(item) for item in items}
    existing = {
        batch.api_id: batch
        for batch in Batch.objects.filter(workspace=workspace, api_id__in=incoming.keys())
    }
    new, changed = [], []
    for api_id, values in incoming.items():
        batch = existing.get(api_id)
        if batch is None:
            new.append(
                Batch(
                    workspace=workspace,
                    api_id=api_id,
                    next_poll_at=_next_poll(now),
                    last_polled_at=now,
                    **values,
                )
            )
            continue
        if batch.gone_at is not None or batch.first_not_found_at is not None:
            # Listed again: it was not deleted after all.
            batch.gone_at = batch.first_not_found_at = None
            changed.append((batch, ["gone_at", "first_not_found_at"]))
        diff = [name for name, value in values.items() if getattr(batch, name) != value]
        if diff:
            for name in diff:
                setattr(batch, name, values[name])
            changed.append((batch, diff))
    if new:
        # Another sync may have stored the same batch a moment ago: keep its row.
        Batch.objects.bulk_create(new, ignore_conflicts=True)
    fields = sorted({name for _, names in changed for name in names})
    if changed:
        batches = list({batch.pk: batch for batch, _ in changed}.values())
        for batch in batches:
            batch.last_polled_at = now
            batch.next_poll_at = _next_poll(now) if batch.is_active else None
        Batch.objects.bulk_update(batches, [*fields, "last_polled_at", "next_poll_at"])
        ended = [
            batch
            for batch, names in changed
            if "processing_status" in names and batch.processing_status == Batch.Status.ENDED
        ]
        audit.record_batches(AuditEntry.Action.BATCH_ENDED, workspace, ended)
    return len(new), len({batch.pk for batch, _ in changed})


def refresh_models(workspace: Workspace, client: ApiClient, now: datetime) -> None:
    """Keep the workspace's model list (the upload form's choices) at most an hour old."""
    if workspace.models_fetched_at and now - workspace.models_fetched_at < MODELS_REFRESH:
        return
    # Fetched once an hour, not once a tick: also when the call fails, so a workspace whose
    # model list is unavailable does not spend its rate limit retrying it.
    Workspace.objects.filter(pk=workspace.pk).update(models_fetched_at=now)
    models = [
        {"id": item["id"], "display_name": item.get("display_name") or item["id"],
         "max_tokens": item.get("max_tokens")}
        for item in client.list_models()
    ]  # fmt: skip
    Workspace.objects.filter(pk=workspace.pk).update(models_available=models, models_fetched_at=now)


def sync_workspace(workspace_pk: int, *, client: ApiClient | None = None) -> SyncReport:
    """List the workspace's batches newest first and mirror them; see the module docstring."""
    workspace = Workspace.objects.get(pk=workspace_pk)
    report = SyncReport(workspace.name)
    started = timezone.now()
    claim = Claim.take(Workspace, workspace.pk, "sync_claimed_until")
    if claim is None:
        report.skipped = True
        return report
    full = workspace.last_full_sync_at is None or started - workspace.last_full_sync_at >= (
        timedelta(seconds=settings.FULL_SYNC_INTERVAL_SECONDS)
    )
    try:
        with claim.kept_alive(), ApiClient.using(workspace, client) as api:
            _sync(workspace, api, started, full, report, claim)
    except ApiError as error:
        report.error = str(error)
        logger.warning("Sync of workspace %s failed: %s", workspace.name, error)
        claim.release(last_sync_error=report.error)
    except Exception as error:
        report.error = f"Unexpected error: {error!r}"
        logger.exception("Sync of workspace %s failed", workspace.name)
        claim.release(last_sync_error=report.error)
    else:
        done = {"last_synced_at": timezone.now(), "last_sync_error": ""}
        if full:
            done["last_full_sync_at"] = started
        claim.release(**done)
    report.to_ingest = list(
        Batch.objects.filter(workspace=workspace)
        .needing_ingestion(timezone.now())
        .values_list("pk", flat=True)
    )
    return report


def _sync(
    workspace: Workspace,
    client: ApiClient,
    now: datetime,
    full: bool,
    report: SyncReport,
    claim: Claim,
) -> None:
    try:
        refresh_models(workspace, client, now)
    except ApiError as error:
        # The model list only feeds the upload form: the batches matter more.
        logger.warning("Model list of %s unavailable: %s", workspace.name, error)
    known = Batch.objects.filter(workspace=workspace, gone_at__isnull=True)
    known_ended = set(
        known.filter(processing_status=Batch.Status.ENDED).values_list("api_id", flat=True)
    )
    # Active batches due for a look: the listing shows them, else each is retrieved below.
    due = dict(
        known.due_for_poll(now).filter(created_at__lt=now).values_list("api_id", "created_at")
    )
    listed: set[str] = set()
    for page in client.iter_batch_pages(limit=LIST_PAGE):
        claim.progressed()
        created, updated = upsert_batches(workspace, page.data, now)
        report.created += created
        report.updated += updated
        ids = [item["id"] for item in page.data]
        listed.update(ids)
        # Older pages hold only batches we already know ended, and the active ones we knew can be
        # retrieved one by one, so a quick tick can stop here: unless listing on reaches them
        # all in fewer calls than retrieving each would take.
        reached_known = not full and any(api_id in known_ended for api_id in ids)
        if reached_known and not _cheaper_to_list_on(known, due, listed):
            break
    report.listed = len(listed)
    # Due batches the listing showed unchanged were looked at all the same.
    seen = [api_id for api_id in due if api_id in listed]
    for start in range(0, len(seen), ID_SLICE):
        known.filter(
            api_id__in=seen[start : start + ID_SLICE], processing_status__in=Batch.ACTIVE
        ).update(last_polled_at=now, next_poll_at=_next_poll(now))

    # Active batches the listing did not reach (or no longer shows), when their poll is due:
    # ask for each one.
    unlisted = [api_id for api_id in due if api_id not in listed]
    for start in range(0, len(unlisted), ID_SLICE):
        for batch in known.filter(api_id__in=unlisted[start : start + ID_SLICE]):
            claim.progressed()
            _refresh(workspace, client, batch, now, report)

    if full:
        # A full listing that misses a batch we know means it was deleted elsewhere. Results we
        # stored stay; the batch is only marked. Young batches get the benefit of the doubt.
        candidates = known.filter(
            created_at__lt=now - Batch.NOT_FOUND_GRACE, first_seen_at__lt=now
        ).values_list("pk", "api_id")
        missing = [pk for pk, api_id in candidates.iterator() if api_id not in listed]
        for start in range(0, len(missing), ID_SLICE):
            vanished = Batch.objects.filter(pk__in=missing[start : start + ID_SLICE])
            audit.record_batches(
                AuditEntry.Action.BATCH_GONE, workspace, vanished.only("api_id", "name")
            )
            report.gone += vanished.update(gone_at=now, next_poll_at=None)


def _refresh(
    workspace: Workspace, client: ApiClient, batch: Batch, now: datetime, report: SyncReport
) -> None:
    """Retrieve one batch the listing did not show, and store what the API says of it."""
    report.refreshed += 1
    try:
        upsert_batches(workspace, [client.retrieve_batch(batch.api_id)], now)
        Batch.objects.filter(pk=batch.pk, processing_status__in=Batch.ACTIVE).update(
            next_poll_at=_next_poll(now)
        )
    except ApiError as error:
        if not error.is_not_found:
            raise
        report.gone += _not_found(batch, now)


def _cheaper_to_list_on(known: QuerySet[Batch], due: dict[str, datetime], listed: set[str]) -> bool:
    """Whether the pages still to list down to the oldest due batch not yet seen are fewer than
    the retrieves those batches would take one by one. The mirror knows the listing's order
    (newest first), so it can count how many batches stand before that one."""
    unseen = [created for api_id, created in due.items() if api_id not in listed]
    if not unseen:
        return False
    standing_before = known.filter(created_at__gte=min(unseen)).count() - len(listed)
    return -(-standing_before // LIST_PAGE) < len(unseen)


def _not_found(batch: Batch, now: datetime) -> int:
    """A 404 for a batch we know: retried for a grace period, then marked gone."""
    first = batch.first_not_found_at or now
    young = batch.created_at > now - Batch.NOT_FOUND_GRACE
    if young or now - first < Batch.NOT_FOUND_GRACE:
        Batch.objects.filter(pk=batch.pk).update(
            first_not_found_at=first, next_poll_at=_next_poll(now)
        )
        return 0
    Batch.objects.filter(pk=batch.pk).update(gone_at=now, next_poll_at=None)
    audit.record_batches(AuditEntry.Action.BATCH_GONE, batch.workspace, [batch])
    return 1
