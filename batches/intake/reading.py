"""Reading an upload from storage: its bytes, decompressed when gzipped (by content, not by name),
cut into numbered lines within caps that no file can lift, and the one CSV reader that intake,
submission and the downloads all use.

Every decompressed byte counts toward the byte cap, the bytes of over-long lines that are skipped
included, and every physical line (blank ones too) toward the line cap, so neither a gzip of
zeros nor a gzip of newlines can keep a process busy; a time cap bounds whatever else a file can
do. Lines are cut from 1 MB blocks with `bytes.split`, so the per-line cost stays in C.
"""

import codecs
import csv
import gzip
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from batches.intake.problems import FIX_UTF8, Problem
from foundations.local_files import BinaryStream

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = codecs.BOM_UTF8
READ_SIZE = 1 << 20


def detect_format(filename: str) -> str | None:
    """The upload's kind from its name, "jsonl" or "csv" (a .gz after it is fine), or None."""
    name = filename.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return None


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # decompressed bytes, skipped ones included
    max_lines: int  # physical lines, blank ones included
    max_line_bytes: int
    max_seconds: float | None

    @classmethod
    def from_settings(cls, max_seconds: float | None = None) -> "Limits":
        return cls(
            max_bytes=settings.MAX_UPLOAD_TEXT_BYTES,
            max_lines=settings.MAX_UPLOAD_LINES,
            max_line_bytes=settings.MAX_REQUEST_LINE_BYTES,
            max_seconds=max_seconds,
        )


class StopReading(Exception):
    """Reading ends here; the problem says why."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


class FileDamaged(StopReading):
    pass


class CountingReader:
    """Counts the bytes read from a stream: how far into the stored (maybe compressed) file the
    reading is, for the progress bar."""

    def __init__(self, stream: BinaryStream) -> None:
        self.stream = stream
        self.count = 0
        self._head = b""

    def peek2(self) -> bytes:
        self._head = self.stream.read(2)
        return self._head

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if size is not None and 0 <= size <= len(head):
                self._head = head[size:]
                head = head[:size]
                self.count += len(head)
                return head
            rest = self.stream.read(-1 if size is None or size < 0 else size - len(head))
            data = head + rest
        else:
            data = self.stream.read(size)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.stream.close()


def _cap_problem(line: int, what: str, fix: str) -> StopReading:
    return StopReading(Problem(line, "", what, fix))


class Lines:
    """The numbered physical lines of a stored file, a block at a time.

    `blocks()` yields `(number of the first line, [line bytes, ...])`: line endings (`\\n`, and a
    `\\r` before it) removed, the UTF-8 byte order mark of the first line dropped. A line longer
    than `max_line_bytes` is never held: it is read past, reported to `on_too_long(number)`, and
    given as an empty line. `start_line` numbers a segment that starts inside a file.
    """

    def __init__(
        self,
        raw_stream: BinaryStream,
        limits: Limits,
        *,
        on_too_long: Callable[[int], None] | None = None,
        start_line: int = 1,
        started: float | None = None,
    ) -> None:
        self.raw = CountingReader(raw_stream)
        self.limits = limits
        self.on_too_long = on_too_long or (lambda number: None)
        self.start_line = start_line
        self.started = time.monotonic() if started is None else started
        self.bytes_read = 0  # decompressed
        self.lines_read = 0
        self.compressed = False

    @property
    def raw_bytes_read(self) -> int:
        return self.raw.count

    def _open(self) -> CountingReader | gzip.GzipFile:
        if self.raw.peek2() == GZIP_MAGIC:
            self.compressed = True
            # The stubs ask for a fileobj with seek(), which GzipFile calls only to rewind;
            # reading goes forward only, and CountingReader cannot seek.
            return gzip.GzipFile(fileobj=self.raw, mode="rb")  # type: ignore[call-overload]
        return self.raw

    def _check_caps(self, next_line: int) -> None:
        limits = self.limits
        if self.bytes_read > limits.max_bytes:
            raise _cap_problem(
                next_line,
                f"The file holds more than {limits.max_bytes / 1e9:,.1f} GB of text once "
                "decompressed, more than one upload may send; checking stopped here.",
                "Split the file, or submit it in several uploads.",
            )
        if self.lines_read > limits.max_lines:
            raise _cap_problem(
                next_line,
                f"The file has more than {limits.max_lines:,} lines, more than one upload may "
                "send; checking stopped here.",
                "Remove blank lines, split the file, or submit it in several uploads.",
            )
        if limits.max_seconds is not None and time.monotonic() - self.started > limits.max_seconds:
            raise _cap_problem(
                next_line,
                f"Checking took longer than {limits.max_seconds:,.0f} seconds, the most one "
                f"check may take; it stopped at line {next_line:,}.",
                "Split the file into smaller uploads.",
            )

    def blocks(self) -> Iterator[tuple[int, list[bytes]]]:
        max_line = self.limits.max_line_bytes
        number = self.start_line  # the number of the next line to come out
        pending: list[bytes] = []  # the pieces of a line not yet ended
        pending_len = 0
        skipping = False  # inside an over-long line: read past it to its end
        first = self.start_line == 1
        data = self._open()
        try:
            while chunk := data.read(READ_SIZE):
                self.bytes_read += len(chunk)
                self._check_caps(number)
                if skipping:
                    end = chunk.find(b"\n")
                    if end == -1:
                        continue
                    skipping = False
                    self.on_too_long(number)
                    self.lines_read += 1
                    yield number, [b""]
                    number += 1
                    chunk = chunk[end + 1 :]
                    if not chunk:
                        continue
                if chunk.find(b"\n") == -1:
                    pending.append(chunk)
                    pending_len += len(chunk)
                    if pending_len > max_line:
                        pending, pending_len, skipping = [], 0, True
                    continue
                lines = chunk.split(b"\n")
                if pending:
                    lines[0] = b"".join(pending) + lines[0]
                tail = lines.pop()
                pending, pending_len = ([tail], len(tail)) if tail else ([], 0)
                if first:
                    first = False
                    if lines[0].startswith(UTF8_BOM):
                        lines[0] = lines[0][len(UTF8_BOM) :]
                if b"\r" in chunk or lines[0].endswith(b"\r"):
                    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
                if len(lines[0]) > max_line or max_line < READ_SIZE:
                    lines = self._blank_long_lines(number, lines)
                self.lines_read += len(lines)
                self._check_caps(number + len(lines))
                yield number, lines
                number += len(lines)
            if skipping:
                self.on_too_long(number)
                self.lines_read += 1
                yield number, [b""]
            elif pending:
                last = b"".join(pending)
                if first and last.startswith(UTF8_BOM):
                    last = last[len(UTF8_BOM) :]
                self.lines_read += 1
                yield number, [last[:-1] if last.endswith(b"\r") else last]
        except (OSError, EOFError, zlib.error) as exc:
            raise FileDamaged(
                Problem(
                    number,
                    "",
                    f"The compressed file is damaged after line {number - 1:,} ({exc}).",
                    "Compress the file again, or upload it uncompressed.",
                )
            ) from None

    def _blank_long_lines(self, number: int, lines: list[bytes]) -> list[bytes]:
        max_line = self.limits.max_line_bytes
        if not any(len(line) > max_line for line in lines):
            return lines
        kept = []
        for offset, line in enumerate(lines):
            if len(line) > max_line:
                self.on_too_long(number + offset)
                line = b""
            kept.append(line)
        return kept

    def numbered(self) -> Iterator[tuple[int, bytes]]:
        """One `(number, line)` at a time, for readers that go row by row (CSV)."""
        for first, lines in self.blocks():
            yield from enumerate(lines, start=first)


def line_too_long_problem(number: int, max_line_bytes: int) -> Problem:
    size = (
        f"{max_line_bytes / 1e6:,.0f} MB" if max_line_bytes >= 1e6 else f"{max_line_bytes:,} bytes"
    )
    return Problem(
        number,
        "",
        f"Line {number:,} is longer than {size}.",
        "Split it: one line holds one request (is a line ending missing?).",
    )


def not_utf8_problem(number: int, raw: bytes, error: UnicodeDecodeError) -> Problem:
    return Problem(
        number,
        "",
        f"Line {number:,} is not UTF-8 text (byte 0x{raw[error.start]:02x} at byte "
        f"{error.start + 1:,}).",
        FIX_UTF8,
    )


# CSV ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CsvRecord:
    first_line: int
    last_line: int  # what a stored request's `line` names, as intake always has
    cells: list[str]
    raw: bytes  # the record's own bytes, its lines joined by \n


class CsvError(Exception):
    """A record the csv reader cannot read (most often a quote never closed): where it began,
    and the bytes of the lines it pulled for it."""

    def __init__(self, line: int, message: str, raw: bytes = b""):
        super().__init__(message)
        self.line = line
        self.raw = raw


def csv_records(
    numbered_lines: Iterator[tuple[int, bytes]],
    on_bad_utf8: Callable[[int, bytes, UnicodeDecodeError], None] | None = None,
) -> Iterator[CsvRecord]:
    """The records of a CSV file: the csv module's default dialect, strict, over decoded lines.

    The reader pulls one line at a time and stops at the end of a record, so the lines it pulled
    for a record are that record's own: a quoted cell can span lines, and a quote inside an
    unquoted cell (`27" monitor`) is text. A line that is not UTF-8 is reported and read with
    replacement characters. An unreadable record (a quote never closed) raises CsvError naming
    the line it began on.
    """
    pulled: list[bytes] = []
    numbers: list[int] = []

    def text_lines() -> Iterator[str]:
        for number, raw in numbered_lines:
            pulled.append(raw)
            numbers.append(number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if on_bad_utf8 is not None:
                    on_bad_utf8(number, raw, error)
                text = raw.decode("utf-8", "replace")
            yield text + "\n"

    reader = csv.reader(text_lines(), strict=True)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = numbers[0] if numbers else 1
            raise CsvError(start, str(exc), b"\n".join(pulled)) from None
        yield CsvRecord(numbers[0], numbers[-1], cells, b"\n".join(pulled))
        pulled.clear()
        numbers.clear()


def open_lines(name: str, limits: Limits | None = None, **kwargs: Any) -> Lines:
    """The lines of the stored file `name` (the caller closes `.raw`)."""
    from foundations.storage import stream

    return Lines(stream(name), limits or Limits.from_settings(), **kwargs)


def csv_header_and_first_row(name: str) -> tuple[list[str], dict[str, str]]:
    """The header of a stored CSV and its first non-blank row (for the template form and its
    live preview); empty when the file cannot be read that far."""
    lines = open_lines(name)
    header: list[str] = []
    try:
        for record in csv_records(lines.numbered()):
            if not header:
                header = [cell.strip() for cell in record.cells]
                continue
            if any(cell.strip() for cell in record.cells):
                return header, dict(zip(header, record.cells, strict=False))
    except (StopReading, CsvError, OSError):
        pass
    finally:
        lines.raw.close()
    return header, {}
