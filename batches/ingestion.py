"""Results ingestion: when a batch has ended, stream its results into Result rows and keep the raw
file, gzipped. Final only when complete.

- The stream is checked line by line: each line must be a result (a known type, a custom_id the
  API allows, numbers and strings of the sizes the columns hold). A stream that ends short of the
  batch's count, a redirect, or a body that is not results JSONL is a failure: recorded on the
  batch (its page says so), tried again with backoff, never stored as final.
- An ingestion claims its batch with a short lease that a thread renews while lines arrive, so a
  worker that is killed lets go within one lease and the next tick hands the batch out again.
  Each stored chunk also records a checkpoint (how many lines, and a digest of their
  custom_ids): the next attempt streams the file again but skips storing the lines the last one
  stored, once it has seen that they are the same lines. Every write is an upsert on
  (batch, custom_id), so nothing is ever stored twice either way.
- Temporary files live in the scratch folder under VAR_DIR, named for their batch, and are
  removed by the next attempt on the same machine if a killed worker left one.
"""

import gzip
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from batches import bulk, totals
from batches.claims import Claim
from batches.client import ApiClient, ApiError
from batches.models import Batch, Result
from batches.text import holds_nul, without_nul
from foundations.local_files import scratch_dir
from foundations.schemas import is_custom_id
from foundations.storage import LocalFile

logger = logging.getLogger(__name__)

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
RESULT_TYPES = frozenset(Result.Type.values)
# An ingestion that stored at least this many rows analyzes the table after it.
ANALYZE_AFTER = 10_000
# The most a token count column holds (PositiveIntegerField on every database).
MAX_COUNT = 2**31 - 1


class NotAResult(ValueError):
    """A line of the results stream that is not a result the dashboard can store."""


@dataclass
class IngestReport:
    batch_pk: int
    skipped: bool = False
    stored: int = 0
    expected: int = 0
    resumed_from: int = 0
    error: str = ""


def _text(value: object, limit: int | None = None) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotAResult(f"a text field holds {type(value).__name__}")
    value = value.replace("\x00", "")  # no database keeps a NUL in text
    return value[:limit] if limit else value


def _count(usage: dict, name: str) -> int:
    value = usage.get(name) or 0
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise NotAResult(f"usage.{name} is {value!r}, not a token count")
    return value


def result_fields(line: dict, raw: bytes = b"") -> dict:
    """The Result columns for one parsed results line, every value checked and bounded."""
    if not isinstance(line, dict):
        raise NotAResult("the line is not an object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not is_custom_id(custom_id):
        raise NotAResult(f"custom_id {str(custom_id)[:80]!r} is not one the API gives")
    result = line.get("result")
    if not isinstance(result, dict) or result.get("type") not in RESULT_TYPES:
        raise NotAResult("the result has no known type")
    kind = result["type"]
    fields = {"custom_id": custom_id, "result_type": kind}
    if kind == Result.Type.SUCCEEDED:
        message = result.get("message")
        if not isinstance(message, dict):
            raise NotAResult("a succeeded result has no message")
        usage = message.get("usage") or {}
        if not isinstance(usage, dict):
            raise NotAResult("usage is not an object")
        content = message.get("content") or []
        if not isinstance(content, list):
            raise NotAResult("content is not a list")
        if b"\\u0000" in raw and holds_nul(content):
            content = without_nul(content)
        fields.update(
            stop_reason=_text(message.get("stop_reason"), 32),
            model=_text(message.get("model"), 100),
            input_tokens=_count(usage, "input_tokens"),
            output_tokens=_count(usage, "output_tokens"),
            cache_creation_input_tokens=_count(usage, "cache_creation_input_tokens"),
            cache_read_input_tokens=_count(usage, "cache_read_input_tokens"),
            content=content,
            answer_text="\n\n".join(
                _text(block.get("text"))
                for block in content
                if isinstance(block, dict) and block.get("type") == "text"
            ),
        )
    elif kind == Result.Type.ERRORED:
        # The error is a nested envelope: {"type": "error", "error": {"type": ..., "message": ...}}
        envelope = result.get("error") or {}
        if not isinstance(envelope, dict):
            raise NotAResult("the error is not an object")
        nested = envelope.get("error")
        inner = nested if isinstance(nested, dict) else envelope
        fields.update(
            error_type=_text(inner.get("type"), 64), error_message=_text(inner.get("message"))
        )
    return fields


# A Result row as the bulk upsert takes it: the batch, then these columns, in this order.
ROW_FIELDS = ["batch", "custom_id", *UPDATE_FIELDS]
ROW_DEFAULTS = {
    field.name: field.get_default()
    for field in Result._meta.concrete_fields
    if field.name in UPDATE_FIELDS
}


def _row(batch_pk: int, fields: dict) -> tuple:
    """The checked fields of one line as a row; content as JSON text (what the column holds)."""
    values = {**ROW_DEFAULTS, **fields}
    content = values["content"]
    values["content"] = None if content is None else orjson.dumps(content).decode()
    return (batch_pk, fields["custom_id"], *(values[name] for name in UPDATE_FIELDS))


def _store_chunk(rows: list[tuple]) -> None:
    """Upsert on (batch, custom_id): a line stored by an earlier attempt is overwritten, never
    duplicated. One transaction per chunk, so a chunk lands whole or not at all."""
    with transaction.atomic():
        bulk.upsert_rows(
            Result, ROW_FIELDS, rows, unique=["batch", "custom_id"], update=UPDATE_FIELDS
        )


def _remove_stale_files(batch: Batch) -> None:
    """A killed worker on this machine may have left this batch's temporary file behind."""
    for path in scratch_dir().glob(f"results-{batch.pk}-*.jsonl.gz"):
        path.unlink(missing_ok=True)


class _Restart(Exception):
    """The stream's first lines are not the ones the checkpoint stored: start over, storing
    every line."""


def _stream_into(
    batch: Batch,
    api: ApiClient,
    claim: Claim[Batch],
    raw: gzip.GzipFile,
    skip: int,
    digest_at_skip: str,
) -> int:
    """Store every result line of the stream (writing each line to `raw`); returns the number of
    lines. The first `skip` lines are not stored again if they are the checkpoint's lines."""
    chunk_size = settings.INGEST_CHUNK_SIZE
    digest = hashlib.sha256()
    rows: list[tuple] = []
    number = 0
    for number, line in enumerate(api.iter_results(batch.results_url), start=1):
        raw.write(line + b"\n")
        try:
            fields = result_fields(orjson.loads(line), line)
        except (orjson.JSONDecodeError, NotAResult) as exc:
            raise ApiError(
                f"Line {number:,} of the results is not a result ({exc}): the stream was cut "
                "off, or is not a results file. Nothing of this attempt is final.",
                error_type="invalid_results",
                retryable=True,
            ) from None
        digest.update(fields["custom_id"].encode() + b"\n")
        if number < skip:
            continue
        if number == skip:
            if digest.hexdigest() != digest_at_skip:
                raise _Restart()
            claim.progressed()
            continue
        rows.append(_row(batch.pk, fields))
        if len(rows) >= chunk_size:
            _store_chunk(rows)
            rows = []
            claim.progressed()
            claim.renew(ingest_checkpoint_lines=number, ingest_checkpoint_digest=digest.hexdigest())
    if rows:
        _store_chunk(rows)
    return number


def ingest_results(batch_pk: int, *, client: ApiClient | None = None) -> IngestReport:
    """Stream an ended batch's results into Result rows and keep the raw file; see the module
    docstring. Safe to run twice at once: the second finds the claim taken."""
    report = IngestReport(batch_pk)
    claim = Claim.take(
        Batch, batch_pk, "ingest_claimed_until", where=Batch.results_fetchable(timezone.now())
    )
    if claim is None:
        report.skipped = True
        return report
    batch = Batch.objects.select_related("workspace").get(pk=batch_pk)
    report.expected = batch.total
    _remove_stale_files(batch)
    descriptor, temp_path = tempfile.mkstemp(
        prefix=f"results-{batch.pk}-", suffix=".jsonl.gz", dir=scratch_dir()
    )
    os.close(descriptor)
    skip, digest = batch.ingest_checkpoint_lines, batch.ingest_checkpoint_digest
    if skip:
        logger.info("Results of %s resumed from line %s, the last attempt's checkpoint",
                    batch.api_id, f"{skip:,}")  # fmt: skip
    try:
        with claim.kept_alive(), ApiClient.using(batch.workspace, client) as api:
            while True:
                try:
                    # Level 6: within 2% of level 9's size at a third of its time.
                    with gzip.open(temp_path, "wb", compresslevel=6) as raw:
                        lines = _stream_into(batch, api, claim, raw, skip, digest)
                    break
                except _Restart:
                    logger.info("Results of %s came in another order: storing them all", batch)
                    skip, digest = 0, ""
        report.resumed_from = skip
        report.stored = Result.objects.filter(batch=batch).count()
        if lines != report.expected or report.stored != report.expected:
            raise ApiError(
                f"The results stream ended after {lines:,} of {report.expected:,} results, "
                "so nothing of it is final.",
                error_type="incomplete_results",
                retryable=True,
            )
        _finish(claim, batch, temp_path, report)
    except Exception as error:
        _failed(claim, batch, error, report)
    finally:
        Path(temp_path).unlink(missing_ok=True)
    return report


def _finish(claim: Claim, batch: Batch, temp_path: str, report: IngestReport) -> None:
    if batch.results_file:
        batch.results_file.delete(save=False)
    with LocalFile(temp_path, "results.jsonl.gz") as stored:
        batch.results_file.save(f"{batch.workspace.slug}/{batch.api_id}.jsonl.gz", stored,
                                save=False)  # fmt: skip
    # Gone before the batch says its results are stored: nothing of this attempt outlives it.
    Path(temp_path).unlink(missing_ok=True)
    done = claim.release(
        results_file=batch.results_file.name,
        results_ingested=report.stored,
        results_ingested_at=timezone.now(),
        ingest_error="",
        ingest_attempts=batch.ingest_attempts + 1,
        ingest_not_before=None,
        ingest_checkpoint_lines=0,
        ingest_checkpoint_digest="",
    )
    if done:
        totals.store_totals(Batch.objects.filter(pk=batch.pk))
        if report.stored >= ANALYZE_AFTER:
            analyze_results()


def analyze_results() -> None:
    """Bring the planner's statistics of the results table up to date after a bulk load, so the
    explorer's next query plans for the rows just written (PostgreSQL runs without autovacuum on
    some machines, and autovacuum waits anyway). SQLite: its cheap `PRAGMA optimize`."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Result._meta.db_table)}")
        else:
            cursor.execute("PRAGMA optimize")


def _failed(claim: Claim, batch: Batch, error: Exception, report: IngestReport) -> None:
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
    claim.release(
        ingest_error=report.error,
        ingest_attempts=attempts,
        ingest_not_before=timezone.now() + backoff,
    )


def reset_backoff(batch: Batch) -> int:
    """ "Refresh now" on a batch whose results are not all stored: try again at once, attempts
    counted afresh (an ingestion that runs now keeps its claim)."""
    return (
        Batch.objects.filter(pk=batch.pk, results_ingested_at__isnull=True)
        .filter(~Q(processing_status__in=Batch.ACTIVE))
        .update(ingest_attempts=0, ingest_not_before=None)
    )
