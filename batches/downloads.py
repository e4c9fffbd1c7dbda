"""Streamed downloads; memory stays the same whatever the size of what is downloaded.

- the raw results JSONL exactly as the API gave it (kept gzipped, unzipped on the fly);
- a flat CSV, one row per result;
- for a CSV upload, the person's own CSV with answer columns appended, rows in their own order;
- an upload's valid requests, and the lines it left out for their problems.

Every file is read through the storage API. Every CSV follows `batches.spreadsheets`: a byte
order mark first, and no cell a spreadsheet would run as a formula.
"""

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator

from django.db import connection
from django.db.models.fields.files import FieldFile
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from batches import labels
from batches.intake.reading import CsvError, CsvRecord, Limits, Lines, csv_records
from batches.models import Batch, BatchRequest, Result, Submission
from batches.spreadsheets import (
    BOM,
    BOM_BYTES,
    FORMULA_AFTER_SPACE,
    FORMULA_STARTS,
    LEADING_SPACE,
    needs_neutralising,
    safe_cell,
    safe_row,
)
from foundations.storage import stream

CHUNK = 2000
READ_SIZE = 256 * 1024
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
    "batch_name",
    "batch_labels",
]
APPENDED_COLUMNS = ["answer", "result_type", "error"]


class NotAvailable(Exception):
    """Why a batch cannot give the file asked for (the message says, for a page or a command)."""


# A batch's files: the end of its name, and the stream (below).
BATCH_FILES = {"jsonl": "-results.jsonl", "csv": "-results.csv", "answers": "-with-answers.csv"}


def batch_file(batch: Batch, fmt: str) -> tuple[Iterator[bytes | str], str]:
    """One of a batch's files (`fmt`, a key of BATCH_FILES) as a stream, and its file name; the
    download pages and `exportresults` alike. Raises NotAvailable with the reason."""
    if fmt == "jsonl":
        if not batch.results_file:
            raise NotAvailable(
                f"{batch.api_id} has no stored results file ({batch.results_state}): results "
                "are stored once the batch has ended and they were fetched."
            )
        chunks: Iterator[bytes | str] = raw_jsonl(batch)
    elif fmt == "csv":
        if not batch.results_complete and not batch.results_ingested:
            raise NotAvailable(f"{batch.api_id} has no stored results yet ({batch.results_state}).")
        chunks = flat_csv(batch)
    else:
        if not batch.can_append_answers:
            raise NotAvailable(
                f"{batch.api_id} did not come from a CSV upload that is still stored, so it has "
                "no CSV to add answers to."
            )
        chunks = csv_with_answers(batch)
    return chunks, filename(batch, BATCH_FILES[fmt])


def filename(batch: Batch, suffix: str) -> str:
    base = slugify(batch.display_name)[:60] or batch.api_id
    day = timezone.localdate().isoformat()
    return f"{base}-{day}{suffix}"


def attachment(
    chunks: Iterable[bytes | str], name: str, content_type: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def stored_file(field_file: FieldFile) -> Iterator[bytes]:
    assert field_file.name is not None, "no file is stored"  # the callers offer stored ones
    with stream(field_file.name, storage=field_file.storage) as reader:
        while block := reader.read(READ_SIZE):
            yield block


def stored_range(field_file: FieldFile, offset: int, length: int) -> Iterator[bytes]:
    assert field_file.name is not None, "no file is stored"  # the callers offer stored ones
    with stream(field_file.name, offset, offset + length, storage=field_file.storage) as reader:
        while block := reader.read(READ_SIZE):
            yield block


def spans_of(field_file: FieldFile, spans: Iterable[tuple[int, int]]) -> Iterator[bytes]:
    """The bytes of each (offset, length) span of a stored file, spans in ascending order, read
    in one pass from the start: a resubmit of 80,000 requests is one read, not 80,000."""
    assert field_file.name is not None, "no file is stored"  # the callers offer stored ones
    with stream(field_file.name, storage=field_file.storage) as reader:
        position = 0
        for offset, length in spans:
            while position < offset:
                skipped = reader.read(min(offset - position, READ_SIZE))
                if not skipped:
                    return
                position += len(skipped)
            pieces, wanted = [], length
            while wanted and (piece := reader.read(wanted)):
                pieces.append(piece)
                wanted -= len(piece)
            data = b"".join(pieces)
            position += len(data)
            yield data


def raw_jsonl(batch: Batch) -> Iterator[bytes]:
    results = batch.results_file
    if results.name is None:
        raise ValueError(f"Batch {batch.pk} keeps no results file.")
    with (
        stream(results.name, storage=results.storage) as stored,
        # The stubs ask for a fileobj with seek(), which GzipFile calls only to rewind; reading
        # goes forward only, and a stored file's stream cannot seek.
        gzip.GzipFile(fileobj=stored) as handle,  # type: ignore[call-overload]
    ):
        while block := handle.read(READ_SIZE):
            yield block


# The flat CSV's columns, as stored: text columns are made safe for spreadsheets, numbers not.
FLAT_FIELDS = [
    ("custom_id", True),
    ("result_type", False),
    ("answer_text", True),
    ("stop_reason", True),
    ("model", True),
    ("input_tokens", False),
    ("output_tokens", False),
    ("cache_creation_input_tokens", False),
    ("cache_read_input_tokens", False),
    ("error_type", True),
    ("error_message", True),
]
FLUSH_CHARS = 256 * 1024


def flat_csv(batch: Batch) -> Iterator[str | bytes]:
    """One row per result in custom_id order, after a header: the stored results as a
    spreadsheet opens them. On PostgreSQL the database writes the rows (COPY ... TO STDOUT,
    formulas neutralised in SQL), at COPY's own speed; elsewhere they are read by key in chunks.
    Both write the same CSV: minimal quoting, "\n" line ends, empty text as an empty cell."""
    yield BOM
    yield ",".join(FLAT_COLUMNS) + "\n"
    # The batch's name and labels on every row, so rows of several files can be put together.
    about = [
        safe_cell(batch.name) or None,
        safe_cell(", ".join(labels.names(batch))) or None,
    ]
    if connection.vendor == "postgresql":
        yield from _flat_rows_by_copy(batch, about)
    else:
        yield from _flat_rows_by_key(batch, about)


def _sql_literal(character: str) -> str:
    return {"\t": "E'\\t'", "\r": "E'\\r'"}.get(character, f"'{character}'")


def _safe_sql(column: str) -> str:
    """SQL for a text column as a CSV cell: a leading apostrophe where a spreadsheet would see a
    formula (the rule of `batches.spreadsheets`), NULL (an empty cell) for empty text. The
    regular expression runs only on text that begins with white space."""
    starts = ", ".join(_sql_literal(character) for character in FORMULA_STARTS)
    wide = ", ".join(_sql_literal(character) for character in FORMULA_AFTER_SPACE)
    spaces = _regex_class(LEADING_SPACE)
    after_space = f"^{spaces}*{_regex_class(FORMULA_AFTER_SPACE)}"
    return (
        f"CASE WHEN left({column}, 1) IN ({starts}, {wide}) "
        f"OR ({column} ~ '^{spaces}' AND {column} ~ '{after_space}') "
        f"THEN '''' || {column} ELSE NULLIF({column}, '') END"
    )


def _regex_class(characters: Iterable[str]) -> str:
    """A PostgreSQL regular expression's bracket expression of these characters, each as its
    \\uXXXX escape, so that none of them can be read as the expression's syntax."""
    return "[" + "".join(f"\\u{ord(character):04x}" for character in characters) + "]"


def _flat_rows_by_copy(batch: Batch, about: list[str | None]) -> Iterator[bytes]:
    from psycopg import sql

    quote = connection.ops.quote_name
    connection.ensure_connection()
    # COPY takes no parameters: the batch's own cells go in as literals, quoted by psycopg.
    constants = [
        "NULL" if value is None else sql.Literal(value).as_string(connection.connection)
        for value in about
    ]
    cells = ", ".join(
        [
            *(_safe_sql(quote(name)) if text else quote(name) for name, text in FLAT_FIELDS),
            *constants,
        ]
    )
    table = quote(Result._meta.db_table)
    query = (
        # The id is an int we hold, inlined: Django's debug cursor takes no COPY parameters.
        f"COPY (SELECT {cells} FROM {table} WHERE batch_id = {int(batch.pk)} "  # noqa: S608
        "ORDER BY custom_id) TO STDOUT WITH (FORMAT csv)"
    )
    with connection.cursor() as cursor, cursor.copy(query) as copy:
        pending: list[bytes] = []
        size = 0
        for block in copy:
            pending.append(bytes(block))
            size += len(block)
            if size >= FLUSH_CHARS:
                yield b"".join(pending)
                pending, size = [], 0
        yield b"".join(pending)


def _flat_rows_by_key(batch: Batch, about: list[str | None]) -> Iterator[str]:
    """Rows read by key in chunks (no OFFSET, no server cursor), written out in blocks."""
    names = [name for name, _ in FLAT_FIELDS]
    text = [is_text for _, is_text in FLAT_FIELDS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    after = ""
    while True:
        rows = list(
            Result.objects.filter(batch=batch, custom_id__gt=after)
            .order_by("custom_id")
            .values_list(*names)[:CHUNK]
        )
        writer.writerows(
            [
                *(safe_cell(v) if is_text else v for v, is_text in zip(row, text, strict=True)),
                *about,
            ]
            for row in rows
        )
        if buffer.tell() >= FLUSH_CHARS or len(rows) < CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if len(rows) < CHUNK:
            return
        after = rows[-1][0]


def _appended(result: Result | None) -> list[str]:
    if result is None:
        return ["", "missing", "No result for this row."]
    error = ""
    if result.result_type == Result.Type.ERRORED:
        error = f"{result.error_type}: {result.error_message}".strip(": ")
    return safe_row([result.answer_text, result.result_type, error])


class _RowWriter:
    """CSV cells as bytes in the csv module's default dialect, the one intake reads."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="")

    def __call__(self, values: Iterable[object]) -> bytes:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerow(values)
        return self.buffer.getvalue().encode("utf-8")


def _record_bytes(record: CsvRecord, write: _RowWriter) -> bytes:
    """A row of the person's file as it was, unless a cell would run as a formula: then the row
    is written again with that cell made plain text."""
    if needs_neutralising(record.cells):
        return write(safe_row(record.cells))
    return record.raw


def _upload_records(
    submission: Submission,
) -> tuple[Lines, Iterator[tuple[int, bytes]], Iterator[CsvRecord]]:
    """The upload's lines, their numbered iterator, and the CSV records read from it (the rest
    of the numbered lines can still be read after a CsvError)."""
    upload = submission.upload
    if upload.name is None:
        raise ValueError(f"Submission {submission.pk} has no upload.")
    lines = Lines(stream(upload.name, storage=upload.storage), Limits.from_settings())
    numbered = lines.numbered()
    return lines, numbered, csv_records(numbered)


def _rest(error: CsvError, numbered: Iterator[tuple[int, bytes]]) -> Iterator[bytes]:
    """What follows a record the reader gave up on: its own lines and every line after, as
    they are (a file that intake refused at that point)."""
    if error.raw:
        yield error.raw + b"\r\n"
    for _, raw in numbered:
        yield raw + b"\r\n"


def csv_with_answers(batch: Batch) -> Iterator[bytes]:
    """The submission's own CSV with answer, result type and error appended, in its order.

    Rows are found exactly as intake found them (`intake.reading.csv_records`); each chunk of
    rows looks up its requests (line → custom_id) and results in two queries. Rows of the file
    that were not part of this batch (another part of a split upload) get empty columns.
    """
    submission = batch.submission
    if submission is None:
        raise ValueError(f"Batch {batch.pk} was not submitted from an upload: it has no CSV.")
    requests = BatchRequest.objects.filter(submission=submission)
    part = getattr(getattr(batch, "submission_part", None), "index", None)
    if part is not None:
        requests = requests.filter(part=part)
    write = _RowWriter()

    def flush(pending: list[CsvRecord]) -> Iterator[bytes]:
        numbers = [record.last_line for record in pending]
        by_line = dict(
            requests.filter(line__in=numbers).values_list("line", "custom_id").order_by()
        )
        results = {
            result.custom_id: result
            for result in Result.objects.filter(batch=batch, custom_id__in=by_line.values()).defer(
                "content"
            )
        }
        for record in pending:
            custom_id = by_line.get(record.last_line)
            extra = _appended(results.get(custom_id)) if custom_id else ["", "", ""]
            yield _record_bytes(record, write) + b"," + write(extra) + b"\r\n"

    lines, numbered, records = _upload_records(submission)
    try:
        yield BOM_BYTES
        pending = []
        try:
            for number, record in enumerate(records):
                if number == 0:
                    yield _record_bytes(record, write) + b"," + write(APPENDED_COLUMNS) + b"\r\n"
                    continue
                pending.append(record)
                if len(pending) >= CHUNK:
                    yield from flush(pending)
                    pending = []
        except CsvError as error:
            yield from flush(pending)
            pending = []
            yield from _rest(error, numbered)
        if pending:
            yield from flush(pending)
    finally:
        lines.raw.close()


def _valid_lines_in_order(submission: Submission) -> Iterator[int]:
    lines = BatchRequest.objects.filter(submission=submission).order_by("line")
    yield from lines.values_list("line", flat=True).iterator(chunk_size=CHUNK)


def valid_lines(submission: Submission) -> Iterator[bytes]:
    """The valid requests as a file of the upload's kind: JSONL from the create bodies (each
    request as it will be sent), or the CSV's header and valid rows."""
    if submission.is_csv:
        yield from _csv_rows(submission, keep_valid=True)
        return
    for part in submission.parts.order_by("index"):
        yield from _body_lines(part.body)


def _body_lines(body: FieldFile) -> Iterator[bytes]:
    """A create body's requests, one per line: the body writes each on its own line, followed by
    a comma; the first line opens the list and the last one closes it."""
    pending = b""
    first = True
    assert body.name is not None, "no body is stored"  # a submitted part has its body
    with stream(body.name, storage=body.storage) as reader:
        while block := reader.read(READ_SIZE):
            pieces = (pending + block).split(b"\n")
            pending = pieces.pop()
            if first:
                pieces = pieces[1:]
                first = False
            out = [piece.removesuffix(b",") + b"\n" for piece in pieces]
            if out:
                yield b"".join(out)
    # `pending` is the closing line, `]}`.


def left_out_lines(submission: Submission) -> Iterator[bytes]:
    """The upload's lines (or CSV rows, under the header) that had problems, as they were."""
    if submission.is_csv:
        yield from _csv_rows(submission, keep_valid=False)
        return
    valid = _valid_lines_in_order(submission)
    next_valid = next(valid, None)
    upload = submission.upload
    if upload.name is None:
        raise ValueError(f"Submission {submission.pk} has no upload.")
    lines = Lines(stream(upload.name, storage=upload.storage), Limits.from_settings())
    try:
        for first, block in lines.blocks():
            out = []
            for number, raw in enumerate(block, start=first):
                while next_valid is not None and next_valid < number:
                    next_valid = next(valid, None)
                if number == next_valid or not raw.strip():
                    continue
                out.append(raw + b"\n")
            if out:
                yield b"".join(out)
    finally:
        lines.raw.close()


def _csv_rows(submission: Submission, *, keep_valid: bool) -> Iterator[bytes]:
    valid = _valid_lines_in_order(submission)
    next_valid = next(valid, None)
    write = _RowWriter()
    lines, numbered, records = _upload_records(submission)
    try:
        yield BOM_BYTES
        try:
            for number, record in enumerate(records):
                if number == 0:
                    yield _record_bytes(record, write) + b"\r\n"
                    continue
                while next_valid is not None and next_valid < record.last_line:
                    next_valid = next(valid, None)
                is_valid = record.last_line == next_valid
                if not any(cell.strip() for cell in record.cells):
                    continue
                if is_valid == keep_valid:
                    yield _record_bytes(record, write) + b"\r\n"
        except CsvError as error:
            if not keep_valid:
                yield from _rest(error, numbered)
    finally:
        lines.raw.close()


# One result's line ----------------------------------------------------------------------------
# A stored results file bigger than this (gzipped) is not scanned for one result's raw line: the
# line is rebuilt from the stored Result instead. Scanning runs at about 5 ms per MB unzipped, and
# results zip 3 to 5 times, so the scan stays under about 0.2 s.
RAW_SCAN_MAX_BYTES = 8 * 1024 * 1024


def raw_result_line(
    batch: Batch, custom_id: str, *, max_bytes: int = RAW_SCAN_MAX_BYTES
) -> dict | None:
    """The result's line as the API sent it, found in the stored results file: unzipped as a
    stream, line by line, up to the first match (constant memory). None when the file is not kept
    or too big to scan on a click; the caller then rebuilds the line from the stored Result."""
    results = batch.results_file
    if not results.name:  # what `not results` asks, in a form that also rules out None
        return None
    needle = f'"{custom_id}"'.encode()
    try:
        if results.size > max_bytes:
            return None
        with (
            stream(results.name, storage=results.storage) as stored,
            gzip.GzipFile(fileobj=stored) as handle,  # type: ignore[call-overload]  # as above
        ):
            for line in handle:
                if needle in line:
                    item = json.loads(line)
                    if item.get("custom_id") == custom_id:
                        return item
    except (OSError, ValueError, EOFError):
        return None
    return None
