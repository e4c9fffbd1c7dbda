"""Keep the mirror current: list each workspace's batches, refresh the active ones, and store the
results of every batch that has ended.

Every function here is safe to run twice at once: a sync claims its workspace and an ingestion its
batch with a conditional update (a lease that lapses if the process dies), and every write is an
upsert that changes nothing when nothing changed.
"""

import gzip
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.db.models import Q
from django.utils import timezone

from batches.api import ApiClient, ApiError
from batches.models import Batch, Result, Workspace

logger = logging.getLogger(__name__)


def claim_lease() -> timedelta:
    """How long a claim holds: longer than a task may run, so a live holder never loses it."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


# Ids are compared in Python and written in slices this size, under every database's limit on
# query parameters (SQLite's is 32,766).
ID_SLICE = 5000


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

    def __str__(self):
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
    return len(new), len({batch.pk for batch, _ in changed})


def claim_workspace(workspace_id: int, now: datetime) -> datetime | None:
    """Hold the workspace for one sync. Returns the claim (its expiry, which also serves as the
    token that releases it), or None when another sync holds it."""
    until = now + claim_lease()
    claimed = (
        Workspace.objects.filter(pk=workspace_id)
        .filter(Q(sync_claimed_until__isnull=True) | Q(sync_claimed_until__lt=now))
        .update(sync_claimed_until=until)
    )
    return until if claimed == 1 else None


def release_workspace(workspace_id: int, claim: datetime, **fields) -> None:
    # Only our own claim is released: if it lapsed and another sync took the workspace, that
    # sync keeps it.
    Workspace.objects.filter(pk=workspace_id, sync_claimed_until=claim).update(
        sync_claimed_until=None, **fields
    )


def sync_workspace(workspace_id: int, *, client: ApiClient | None = None) -> SyncReport:
    """List the workspace's batches newest first and mirror them; see the module docstring."""
    workspace = Workspace.objects.get(pk=workspace_id)
    report = SyncReport(workspace.name)
    started = timezone.now()
    claim = claim_workspace(workspace.pk, started)
    if claim is None:
        report.skipped = True
        return report
    full = workspace.last_full_sync_at is None or started - workspace.last_full_sync_at >= (
        timedelta(seconds=settings.FULL_SYNC_INTERVAL_SECONDS)
    )
    try:
        with ApiClient.using(workspace, client) as api:
            _sync(workspace, api, started, full, report)
    except ApiError as error:
        report.error = str(error)
        logger.warning("Sync of workspace %s failed: %s", workspace.name, error)
        release_workspace(workspace.pk, claim, last_sync_error=report.error)
    except Exception as error:
        report.error = f"Unexpected error: {error!r}"
        logger.exception("Sync of workspace %s failed", workspace.name)
        release_workspace(workspace.pk, claim, last_sync_error=report.error)
    else:
        done = {"last_synced_at": timezone.now(), "last_sync_error": ""}
        if full:
            done["last_full_sync_at"] = started
        release_workspace(workspace.pk, claim, **done)
    report.to_ingest = list(
        Batch.objects.filter(workspace=workspace)
        .needing_ingestion(timezone.now())
        .values_list("pk", flat=True)
    )
    return report


MODELS_REFRESH = timedelta(hours=1)


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


def _sync(
    workspace: Workspace, client: ApiClient, now: datetime, full: bool, report: SyncReport
) -> None:
    try:
        refresh_models(workspace, client, now)
    except ApiError as error:
        # The model list only feeds the upload form: the batches matter more.
        logger.warning("Model list of %s unavailable: %s", workspace.name, error)
    known = Batch.objects.filter(workspace=workspace, gone_at__isnull=True)
    known_ended = set(known.filter(processing_status=Batch.Status.ENDED).values_list("api_id"))
    known_ended = {api_id for (api_id,) in known_ended}
    listed: set[str] = set()
    for page in client.iter_batch_pages(limit=1000):
        created, updated = upsert_batches(workspace, page.data, now)
        report.created += created
        report.updated += updated
        ids = [item["id"] for item in page.data]
        listed.update(ids)
        # Older pages hold only batches we already know ended; the active ones we knew are
        # refreshed one by one below, so a quick tick can stop here.
        if not full and any(api_id in known_ended for api_id in ids):
            break
    report.listed = len(listed)

    # Active batches the listing did not reach (or no longer shows), when their poll is due:
    # ask for each one.
    for batch in known.due_for_poll(now).filter(created_at__lt=now).iterator():
        if batch.api_id in listed:
            continue
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

    if full:
        # A full listing that misses a batch we know means it was deleted elsewhere. Results we
        # stored stay; the batch is only marked. Young batches get the benefit of the doubt.
        candidates = known.filter(
            created_at__lt=now - Batch.NOT_FOUND_GRACE, first_seen_at__lt=now
        ).values_list("pk", "api_id")
        missing = [pk for pk, api_id in candidates.iterator() if api_id not in listed]
        for start in range(0, len(missing), ID_SLICE):
            report.gone += Batch.objects.filter(pk__in=missing[start : start + ID_SLICE]).update(
                gone_at=now, next_poll_at=None
            )


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
    return 1


# Ingestion --------------------------------------------------------------------------------------


@dataclass
class IngestReport:
    batch_id: int
    skipped: bool = False
    stored: int = 0
    expected: int = 0
    mismatch: str = ""
    error: str = ""


def claim_batch_for_ingestion(batch_id: int, now: datetime) -> datetime | None:
    """Hold the batch for one ingestion; the claim (its expiry) releases it, as for syncs."""
    until = now + claim_lease()
    claimed = (
        Batch.objects.filter(pk=batch_id).needing_ingestion(now).update(ingest_claimed_until=until)
    )
    return until if claimed == 1 else None


def result_fields(line: dict) -> dict:
    """The Result columns for one parsed results line."""
    result = line["result"]
    kind = result["type"]
    fields = {"result_type": kind}
    if kind == Result.Type.SUCCEEDED:
        message = result["message"]
        usage = message.get("usage") or {}
        content = message.get("content") or []
        fields.update(
            stop_reason=message.get("stop_reason") or "",
            model=message.get("model") or "",
            input_tokens=usage.get("input_tokens") or 0,
            output_tokens=usage.get("output_tokens") or 0,
            cache_creation_input_tokens=usage.get("cache_creation_input_tokens") or 0,
            cache_read_input_tokens=usage.get("cache_read_input_tokens") or 0,
            content=content,
            answer_text="\n\n".join(
                block.get("text", "") for block in content if block.get("type") == "text"
            ),
        )
    elif kind == Result.Type.ERRORED:
        # The error is a nested envelope: {"type": "error", "error": {"type": ..., "message": ...}}
        envelope = result.get("error") or {}
        inner = envelope.get("error") if isinstance(envelope.get("error"), dict) else envelope
        fields.update(error_type=inner.get("type") or "", error_message=inner.get("message") or "")
    return fields


UPDATE_FIELDS = [
    "result_type",
    "error_type",
    "error_message",
    "stop_reason",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "content",
    "answer_text",
]


def _store_chunk(batch: Batch, rows: list[Result]) -> None:
    Result.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["batch", "custom_id"],
        update_fields=UPDATE_FIELDS,
    )


def ingest_results(batch_id: int, *, client: ApiClient | None = None) -> IngestReport:
    """Stream an ended batch's results into Result rows and keep the raw file, gzipped.

    Idempotent (upserts on batch + custom_id) and resumable: a run that dies leaves its lease to
    lapse, and the next run streams the file again and ends with the same rows.
    """
    report = IngestReport(batch_id)
    now = timezone.now()
    claim = claim_batch_for_ingestion(batch_id, now)
    if claim is None:
        report.skipped = True
        return report
    batch = Batch.objects.select_related("workspace").get(pk=batch_id)
    report.expected = batch.total
    chunk_size = settings.INGEST_CHUNK_SIZE
    temp = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed or moved in every path below)
        prefix="results-", suffix=".jsonl.gz", delete=False
    )
    try:
        with (
            ApiClient.using(batch.workspace, client) as api,
            gzip.GzipFile(fileobj=temp, mode="wb") as raw,
        ):
            rows: list[Result] = []
            for number, line in enumerate(api.iter_results(batch.results_url), start=1):
                raw.write(line + b"\n")
                try:
                    parsed = json.loads(line)
                    rows.append(
                        Result(batch=batch, custom_id=parsed["custom_id"], **result_fields(parsed))
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise ApiError(
                        f"Line {number} of the results is not a result ({exc}); the stream "
                        "was probably cut off.",
                        error_type="stream_error",
                        retryable=True,
                    ) from exc
                if len(rows) >= chunk_size:
                    _store_chunk(batch, rows)
                    rows = []
            if rows:
                _store_chunk(batch, rows)
        temp.close()
        report.stored = Result.objects.filter(batch=batch).count()
        if report.stored != report.expected:
            report.mismatch = (
                f"Stored {report.stored:,} results but the batch counts {report.expected:,} "
                "requests."
            )
            logger.warning("Batch %s: %s", batch.api_id, report.mismatch)
        with open(temp.name, "rb") as handle:
            if batch.results_file:
                batch.results_file.delete(save=False)
            batch.results_file.save(
                f"{batch.workspace.slug}/{batch.api_id}.jsonl.gz", File(handle), save=False
            )
        Batch.objects.filter(pk=batch.pk, ingest_claimed_until=claim).update(
            results_file=batch.results_file.name,
            results_ingested=report.stored,
            results_ingested_at=timezone.now(),
            ingest_mismatch=report.mismatch,
            ingest_error="",
            ingest_attempts=batch.ingest_attempts + 1,
            ingest_claimed_until=None,
            ingest_not_before=None,
        )
    except Exception as error:
        if isinstance(error, ApiError):
            report.error = str(error)
            logger.warning("Ingesting results of %s failed: %s", batch.api_id, error)
        else:
            # A fault of ours or of the database: shown on the batch page like any other, and
            # counted, so it cannot retry unseen forever.
            report.error = f"Unexpected error while storing the results: {error!r}"
            logger.exception("Ingesting results of %s failed", batch.api_id)
        # Try again later, backing off: 15 s, 30 s, 1 min, ... up to an hour.
        attempts = batch.ingest_attempts + 1
        backoff = timedelta(seconds=min(15 * 2 ** (attempts - 1), 3600))
        Batch.objects.filter(pk=batch.pk, ingest_claimed_until=claim).update(
            ingest_error=report.error,
            ingest_attempts=attempts,
            ingest_claimed_until=None,
            ingest_not_before=timezone.now() + backoff,
        )
    finally:
        temp.close()
        if os.path.exists(temp.name):
            os.unlink(temp.name)
    return report
