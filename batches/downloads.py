"""Streamed downloads of a batch's results; memory stays the same whatever the batch's size.

- the raw results JSONL exactly as the API gave it (kept gzipped, unzipped on the fly);
- a flat CSV, one row per result;
- for a CSV upload, the person's own CSV with answer columns appended, rows in their own order.
"""

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify

from batches import intake
from batches.models import Batch, BatchRequest, Result

CHUNK = 2000
READ_SIZE = 64 * 1024
FLAT_COLUMNS = [
    "custom_id",
    "result_type",
    "answer",
    "stop_reason",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "error_type",
    "error_message",
]
APPENDED_COLUMNS = ["answer", "result_type", "error"]


class Echo:
    """A file-like object whose write returns what it was given, for csv.writer."""

    def write(self, value):
        return value


def filename(batch: Batch, suffix: str) -> str:
    base = slugify(batch.display_name)[:60] or batch.api_id
    day = timezone.localdate().isoformat()
    return f"{base}-{day}{suffix}"


def attachment(chunks: Iterable[bytes | str], name: str, content_type: str):
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def raw_jsonl(batch: Batch) -> Iterator[bytes]:
    with batch.results_file.open("rb") as stored, gzip.GzipFile(fileobj=stored) as handle:
        while block := handle.read(READ_SIZE):
            yield block


def _results_in_order(batch: Batch) -> Iterator[Result]:
    """Every result in custom_id order, read by key in chunks (no OFFSET, no server cursor)."""
    after = ""
    while True:
        rows = list(
            Result.objects.filter(batch=batch, custom_id__gt=after)
            .order_by("custom_id")
            .defer("content")[:CHUNK]
        )
        yield from rows
        if len(rows) < CHUNK:
            return
        after = rows[-1].custom_id


def flat_csv(batch: Batch) -> Iterator[str]:
    writer = csv.writer(Echo())
    yield "\ufeff"  # so spreadsheet programs read UTF-8
    yield writer.writerow(FLAT_COLUMNS)
    for result in _results_in_order(batch):
        yield writer.writerow(
            [
                result.custom_id,
                result.result_type,
                result.answer_text,
                result.stop_reason,
                result.model,
                result.input_tokens,
                result.output_tokens,
                result.cache_creation_input_tokens,
                result.cache_read_input_tokens,
                result.error_type,
                result.error_message,
            ]
        )


def _appended(result: Result | None) -> list[str]:
    if result is None:
        return ["", "missing", "No result for this row."]
    error = ""
    if result.result_type == Result.Type.ERRORED:
        error = f"{result.error_type}: {result.error_message}".strip(": ")
    return [result.answer_text, result.result_type, error]


def can_append_to_upload(batch: Batch) -> bool:
    submission = batch.submission
    return bool(
        submission is not None
        and submission.source_format == "csv"
        and submission.upload
        and Path(submission.upload.path).exists()
    )


def csv_with_answers(batch: Batch) -> Iterator[bytes]:
    """The submission's own CSV, byte for byte, with answer, result type and error appended.

    The upload is read line by line; each chunk of rows looks up its requests (line → custom_id)
    and results in two queries. Rows of the file that were not part of this batch (another part
    of a split upload) get empty columns. The header row gets the column names.
    """
    submission = batch.submission
    path = Path(submission.upload.path)
    requests = BatchRequest.objects.filter(submission=submission)
    part = getattr(getattr(batch, "submission_part", None), "index", None)
    if part is not None:
        requests = requests.filter(part=part)
    delimiter = ","  # intake reads CSV with the csv module's default dialect
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="")

    def cells(values) -> bytes:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue().encode("utf-8")

    def flush(pending):
        lines = [number for number, _, _ in pending]
        by_line = dict(requests.filter(line__in=lines).values_list("line", "custom_id").order_by())
        results = {
            result.custom_id: result
            for result in Result.objects.filter(batch=batch, custom_id__in=by_line.values()).defer(
                "content"
            )
        }
        for number, raw, ending in pending:
            custom_id = by_line.get(number)
            extra = _appended(results.get(custom_id)) if custom_id else ["", "", ""]
            yield raw + delimiter.encode() + cells(extra) + ending

    pending: list[tuple[int, bytes, bytes]] = []
    header_done = False
    for number, raw in _logical_rows(path):
        if not header_done:
            header_done = True
            yield raw + delimiter.encode() + cells(APPENDED_COLUMNS) + b"\r\n"
            continue
        pending.append((number, raw, b"\r\n"))
        if len(pending) >= CHUNK:
            yield from flush(pending)
            pending = []
    if pending:
        yield from flush(pending)


def _logical_rows(path: Path) -> Iterator[tuple[int, bytes]]:
    """(the row's last line number, the row's bytes) for each CSV record of the file.

    Rows are found exactly as intake found them: a strict csv reader over the decoded lines.
    The reader pulls one line at a time and stops at the end of a record, so the lines it pulled
    while reading a row are that row's own; the record keeps the number of its last line
    (`reader.line_num` after the row), which is what intake stored as `BatchRequest.line`. A quote
    inside an unquoted cell (`27" monitor`) is text, as it was for intake. Only one row's lines
    are held at a time. If the reader gives up (a file intake would have refused), the rest of
    the file is copied line by line.
    """
    pulled: list[bytes] = []
    lines = intake.physical_lines(path)

    def text_lines() -> Iterator[str]:
        for _, raw in lines:
            pulled.append(raw)
            yield raw.decode("utf-8", "replace") + "\n"

    reader = csv.reader(text_lines(), strict=True)
    while True:
        try:
            next(reader)
        except StopIteration:
            break
        except csv.Error:
            for number, raw in enumerate(pulled, start=reader.line_num - len(pulled) + 1):
                yield number, raw
            for number, raw in lines:
                yield number, raw
            return
        yield reader.line_num, b"\n".join(pulled)
        pulled.clear()
    if pulled:
        yield reader.line_num, b"\n".join(pulled)
