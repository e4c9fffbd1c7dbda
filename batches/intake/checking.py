"""One pass over an upload: every line read once, checked once, and (for a stored submission)
kept once in the create bodies that Submit sends as they are.

A valid JSONL line goes into its batch's body byte for byte, so nothing is encoded twice and the
API receives exactly what the file said. A CSV row becomes a request through its template and is
encoded once, with orjson. Each body is `{"requests":[` and a line break, then one request per
line followed by `,` (the last one without), then `]}`: a valid JSON document in which every
request can be found again by its byte range (the page that shows one request, resubmitting,
downloading the valid lines).

A large uncompressed JSONL file is checked in segments by several processes at once (forked, so
they share the compiled schema); `merge` then puts their findings together in file order: a
`custom_id` used in two segments is a duplicate like any other, and the batches are cut from the
whole file. Everything else is the same code as a single pass.
"""

import logging
import os
import pickle
import signal
import struct
import tempfile
import time
import warnings
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, repeat
from operator import add
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from batches.intake.bounds import MAX_INTEGER, integers_written_as_integers
from batches.intake.estimating import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    Estimate,
    request_tokens,
)
from batches.intake.problems import FIRST_PROBLEMS, Problem, ProblemLog
from batches.intake.reading import (
    GZIP_MAGIC,
    CsvError,
    CsvRecord,
    Limits,
    Lines,
    StopReading,
    csv_records,
    line_too_long_problem,
    not_utf8_problem,
)
from batches.intake.rules import Rules, clip, may_hold_nul
from batches.intake.splitting import Part, Splitter
from batches.intake.templating import CsvOptions
from dashboard.local_files import scratch_dir
from dashboard.schemas import may_break_rules, rule_problems

logger = logging.getLogger(__name__)

PREVIEW_REQUESTS = 5
# A preview shows at most this much of a request; the whole one is a link away.
PREVIEW_BYTES = 4096
# Requests up to this size are shown indented; bigger ones as their first bytes.
PRETTY_MAX_BYTES = 64 * 1024
BODY_HEAD = b'{"requests":[\n'
BODY_TAIL = b"\n]}"
SEPARATOR = b",\n"


class CheckStopped(Exception):
    """The person stopped the check, or this process lost its claim on it."""


# The words of a line whose checking raised what nothing foresaw (Check._unforeseen): the bounds
# are there so that no line ever gets them, and the fuzz run (bench/fuzz_intake.py) counts them.
UNFORESEEN = "could not be checked"


@dataclass
class Report:
    request_count: int = 0
    request_bytes: int = 0
    rejected_count: int = 0  # lines or rows left out for their problems
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    parts: list[dict] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines_read: int = 0
    complete: bool = True  # False when a cap or a damaged file ended the reading early

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.request_count > 0


@dataclass(frozen=True)
class BodyPlace:
    """Where a segment writes its requests: from `start` in the file at `path`, so that
    segments checked at once by several processes write one file side by side; another
    segment's requests follow unless this is the `last`."""

    path: str
    start: int
    last: bool


class Accepted:
    """The valid requests of a segment in file order: their custom_id, line and size, and (when
    a body is kept) their bytes, each followed by `,\\n`, in a temporary file.

    That file starts with BODY_HEAD, so that when every request goes into one batch (nearly
    every file) it is the batch's create body as it stands: finishing it is cutting the last
    separator and writing BODY_TAIL, not copying it (compose_bodies).
    """

    def __init__(self, keep_bodies: bool, place: BodyPlace | None = None):
        self.custom_ids: list[str] = []
        self.lines = array("q")
        self.lengths = array("q")
        self.body_path: str | None = None
        self.body_start = 0  # where the first request is in the file
        self.body_size = 0
        self._owns_file = False  # a file shared by segments is removed by whoever made it
        self._bounded = place is not None and not place.last  # another segment's requests follow
        self._body = None
        if place is not None:
            descriptor = os.open(place.path, os.O_WRONLY)
            os.lseek(descriptor, place.start, os.SEEK_SET)
            self.body_path, self.body_start = place.path, place.start
        elif keep_bodies:
            descriptor, self.body_path = tempfile.mkstemp(
                dir=scratch_dir(), prefix="check-", suffix=".body"
            )
            os.write(descriptor, BODY_HEAD)
            self.body_start = len(BODY_HEAD)
            self._owns_file = True
        else:
            return
        self._body = os.fdopen(descriptor, "wb", buffering=1 << 20)

    def __len__(self) -> int:
        return len(self.custom_ids)

    def write(self, data: bytes, room: int | None = None) -> None:
        """Append requests; `room`: how much they may take by now, the bytes plus the lines
        read so far (a request takes one byte more in a body than its line with its line
        break). The next segment's requests start where this one's room ends: never write past
        it. (The last line of a file may have no line break, but no segment follows it.)"""
        if self._body is None:
            return
        self.body_size += len(data)
        if self._bounded and room is not None and self.body_size > room:
            raise RuntimeError("A segment's requests outgrew the room kept for them.")
        self._body.write(data)

    def offsets(self) -> list[int]:
        """Where each request starts in the body file."""
        steps = (length + len(SEPARATOR) for length in self.lengths)
        return list(accumulate(steps, initial=self.body_start))[:-1]

    @property
    def body_end(self) -> int:
        return self.body_start + self.body_size

    def finish(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def discard(self) -> None:
        self.finish()
        if self.body_path and self._owns_file:
            Path(self.body_path).unlink(missing_ok=True)


@dataclass
class SegmentResult:
    """What one segment's pass found, in a form one process can hand another."""

    accepted: Accepted
    first_line: dict[str, int]  # every custom_id used in the segment, valid or not
    problems: list[Problem]  # the first ones, by line
    problem_count: int
    report_path: str | None  # every problem, as CSV rows (no header)
    rejected: set[int]
    estimate: Estimate
    preview: list[dict]
    lines_read: int
    complete: bool


class Check:
    """One pass over one segment (the whole file, unless it is checked in several).

    `progress(lines_read, raw_bytes_read, requests, problems)` is called about twice a second;
    returning False stops the pass with CheckStopped.
    """

    def __init__(
        self,
        *,
        models: list[dict] | None,
        keep_bodies: bool = False,
        report_dir: str | None = None,
        progress: Callable[[int, int, int, int], bool] | None = None,
        max_requests: int | None = None,
        body_place: BodyPlace | None = None,
    ):
        self.rules = Rules(models)
        self.report_file = None
        if report_dir is not None:
            self.report_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in result)
                dir=report_dir, prefix="check-", suffix=".problems.csv", delete=False
            )
        self.log = ProblemLog(self.report_file, header=False)
        self.progress = progress
        self.accepted = Accepted(keep_bodies, body_place)
        self.estimate = Estimate()
        self.preview: list[dict] = []
        self.rejected: set[int] = set()
        self.max_requests = (
            max_requests or settings.MAX_UPLOAD_BATCHES * settings.MAX_BATCH_REQUESTS
        )
        self.complete = True
        self._next_progress = time.monotonic() + settings.CHECK_PROGRESS_SECONDS
        self._lines: Lines | None = None
        self._logged_unforeseen = False

    # Problems
    def problem(self, problem: Problem) -> None:
        self.log.add(problem)
        if problem.line is not None:
            self.rejected.add(problem.line)

    def _reading(self) -> Lines:
        """The lines being read: run_jsonl and run_csv set them before anything reports."""
        if self._lines is None:
            raise RuntimeError("No segment is being read: run_jsonl or run_csv comes first.")
        return self._lines

    def _unforeseen(self, line: int, error: Exception) -> Problem:
        """The last defence: a line whose checking raised is a problem of that line, and the
        lines after it are still checked. Called while handling `error` (the first one of a
        check is logged with its traceback)."""
        if not self._logged_unforeseen:
            self._logged_unforeseen = True
            logger.exception("Checking line %s raised", line)
        try:
            reason = clip(f"{type(error).__name__}: {error}".removesuffix(": "), 120)
        except Exception:  # an exception that cannot even say what it is
            reason = type(error).__name__
        return Problem(
            line,
            "",
            f"Line {line:,} {UNFORESEEN}: {reason}; please report this.",
            "Report this line to us; the other lines were checked.",
        )

    def _too_long(self, number: int) -> None:
        self.problem(line_too_long_problem(number, self._reading().limits.max_line_bytes))

    def _tick(self) -> None:
        now = time.monotonic()
        if now < self._next_progress or self.progress is None:
            return
        self._next_progress = now + settings.CHECK_PROGRESS_SECONDS
        lines = self._reading()
        if not self.progress(
            lines.lines_read, lines.raw_bytes_read, len(self.accepted), self.log.count
        ):
            raise CheckStopped()

    def _too_many(self, line: int) -> StopReading:
        return StopReading(
            Problem(
                line,
                "",
                f"The file holds more than {self.max_requests:,} requests: one upload makes at "
                f"most {settings.MAX_UPLOAD_BATCHES} batches; checking stopped here.",
                "Split the file, or submit it in several uploads.",
            )
        )

    def _preview(self, line: int, custom_id: str, params: dict, raw: bytes) -> None:
        """The first bytes of a request for the page: its params indented, or, for a request
        too big to indent at no cost, its first bytes as sent."""
        whole = len(raw) <= PRETTY_MAX_BYTES
        if whole:
            text = orjson.dumps(params, option=orjson.OPT_INDENT_2).decode("utf-8")
        else:
            text = raw[: PREVIEW_BYTES + 4].decode("utf-8", "ignore")
        self.preview.append(
            {
                "line": line,
                "custom_id": custom_id,
                "json": text[:PREVIEW_BYTES],
                "truncated": not whole or len(text) > PREVIEW_BYTES,
                "bytes": len(raw),
            }
        )

    # JSONL
    def run_jsonl(self, lines: Lines) -> None:
        """The hot loop: every line of a file passes here. Rules.check and the bookkeeping of an
        accepted request are written out inline, and every name is a local, because a method
        call per line is a measurable share of the whole check.

        Whatever a line holds, its checking ends with it: a line that raises anything
        unforeseen is reported as a problem of its own (`_unforeseen`), and the next is read."""
        self._lines = lines
        lines.on_too_long = self._too_long
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        rules = self.rules
        is_valid = rules.is_valid
        out_of_bounds = rules.out_of_bounds
        first_line = rules.first_line
        limits, within_models = rules.limits, rules.within_models
        accepted = self.accepted
        add_id, add_line, add_length = (
            accepted.custom_ids.append,
            accepted.lines.append,
            accepted.lengths.append,
        )
        keep = accepted.body_path is not None
        estimate = self.estimate
        per_model = estimate.per_model
        max_requests = self.max_requests
        count = 0
        for first, block in lines.blocks():
            pieces: list[bytes] = []
            keep_piece = pieces.append if keep else None
            for number, raw in enumerate(block, first):
                try:
                    try:
                        item = loads(raw)
                    except decode_error as error:
                        if raw.strip():  # a blank line is no request, and no problem either
                            self.problem(rules.json_problem(number, raw, error))
                        continue
                    # The usual request, told by its shape before anything walks it: a model,
                    # an integer max_tokens and one message of text, nothing else. It nests 4
                    # levels and holds no number but max_tokens, so it keeps every bound
                    # (bounds.py) with no walk; it cannot break a rule the schema states only in
                    # words, and its estimate is its text's length: no function call for any.
                    # (A lookup that works proves the type of what it looked in: orjson makes
                    # only dicts, lists, strings, numbers, booleans and None, and a dict's keys
                    # are strings.)
                    try:
                        params = item["params"]
                        messages = params["messages"]
                        message = messages[0]
                        text = message["content"]
                        shape = (
                            len(item) == 2
                            and len(params) == 3
                            and len(messages) == 1
                            and len(message) == 2
                            and type(text) is str
                            and type(item["custom_id"]) is str
                            and type(message["role"]) is str
                            and type(params["model"]) is str
                            and type(max_tokens := params["max_tokens"]) is int
                            and max_tokens <= MAX_INTEGER
                        )
                    except (KeyError, IndexError, TypeError):
                        shape = False
                    if shape:
                        chars = len(text)
                        usual = chars != 0
                    else:
                        usual = False
                        bounded = out_of_bounds(number, item)
                        if bounded is not None:
                            for problem in bounded:
                                self.problem(problem)
                            continue
                    try:
                        valid = type(item) is dict and is_valid(item)
                    except ValueError:  # the validator's own depth limit, below MAX_DEPTH
                        valid = False
                    if valid:
                        custom_id = item["custom_id"]
                        params = item["params"]
                        if (
                            custom_id not in first_line
                            and (usual or integers_written_as_integers(params))
                            and (limits is None or within_models(params))
                            and (raw.find(b"\\") < 0 or not may_hold_nul(raw, item))
                            and (usual or not (may_break_rules(params) and rule_problems(params)))
                        ):
                            # Everything that could fail comes before the bookkeeping, which
                            # then cannot stop halfway.
                            if usual:  # as Estimate.add counts it
                                tokens = -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
                                cached = False
                            else:
                                tokens, cached = request_tokens(params)
                            if count >= max_requests:
                                raise self._too_many(number)
                            if count < PREVIEW_REQUESTS:
                                self._preview(number, custom_id, params, raw)
                            first_line[custom_id] = number
                            count += 1
                            add_id(custom_id)
                            add_line(number)
                            add_length(len(raw))
                            model = params["model"]
                            row = per_model.get(model) or estimate.row(model)
                            row[0] += 1
                            row[1] += tokens
                            row[2] += params["max_tokens"]
                            row[3] += cached
                            if keep_piece is not None:
                                keep_piece(raw)
                            continue
                    for problem in rules.problems(number, item, raw, bounds_kept=True):
                        self.problem(problem)
                except StopReading:
                    raise
                except Exception as error:
                    self.problem(self._unforeseen(number, error))
            if pieces:
                # One write a block: each request followed by its separator.
                pieces.append(b"")
                accepted.write(SEPARATOR.join(pieces), lines.bytes_read + lines.lines_read)
            self._tick()

    # CSV
    def run_csv(self, lines: Lines, options: CsvOptions) -> None:
        self._lines = lines
        lines.on_too_long = self._too_long
        try:
            placeholders = options.placeholders()
        except ValueError as exc:
            self.problem(Problem(None, "template", str(exc), "Fix the template."))
            return
        unusable = options.unusable()
        if unusable is not None:
            self.problem(Problem(None, *unusable))
            return
        records = csv_records(
            lines.numbered(), lambda n, raw, error: self.problem(not_utf8_problem(n, raw, error))
        )
        try:
            header_record = next(records)
        except StopIteration:
            return
        except CsvError as exc:
            self.problem(
                Problem(exc.line, "", f"The header row cannot be read: {exc}.", "Fix the quoting.")
            )
            return
        header = [name.strip() for name in header_record.cells]
        missing = [name for name in placeholders if name not in header]
        for name in missing:
            self.problem(
                Problem(
                    header_record.last_line,
                    f"{{{name}}}",
                    f"The template uses {{{name}}} but the file has no column {name!r}.",
                    f"Use one of the columns: {clip(', '.join(header), 300)}.",
                )
            )
        if options.id_column and options.id_column not in header:
            self.problem(
                Problem(
                    header_record.last_line,
                    options.id_column,
                    f"There is no column {options.id_column!r} to take the custom_id from.",
                    f"Pick one of: {clip(', '.join(header), 300)}, or let the dashboard number "
                    "the rows.",
                )
            )
            return
        if missing:
            return
        row_number = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except CsvError as exc:
                self.problem(
                    Problem(
                        exc.line,
                        "",
                        f"The row starting at line {exc.line:,} cannot be read: {exc} (often a "
                        "quote that is never closed).",
                        'Close every quoted field, and write a quote inside one as "".',
                    )
                )
                self.complete = False
                return
            self._tick()
            if not any(cell.strip() for cell in record.cells):
                continue
            row_number += 1
            try:
                self._csv_row(record, header, placeholders, options, row_number)
            except StopReading:
                raise
            except Exception as error:
                self.problem(self._unforeseen(record.last_line, error))

    def _csv_row(
        self,
        record: CsvRecord,
        header: list[str],
        placeholders: list[str],
        options: CsvOptions,
        row_number: int,
    ) -> None:
        """Check one row of a CSV (not a blank one), and keep its request."""
        cells = record.cells
        line = record.last_line
        if len(cells) != len(header):
            self.problem(
                Problem(
                    line,
                    "",
                    f"Row {row_number:,} has {len(cells)} field{'s' if len(cells) != 1 else ''}"
                    f" but the header has {len(header)}.",
                    "Quote fields that contain commas, and give every row the header's columns.",
                )
            )
            return
        row = dict(zip(header, cells, strict=True))
        custom_id = row[options.id_column].strip() if options.id_column else f"row-{row_number}"
        prompt = options.render(row)
        if not prompt.strip():
            self.problem(
                Problem(
                    line,
                    ", ".join(placeholders),
                    f"Row {row_number:,} gives an empty prompt.",
                    "Fill in the row's cells, or remove the row.",
                )
            )
            return
        params = options.params(prompt)
        item = {"custom_id": custom_id, "params": params}
        raw = orjson.dumps(item)
        problems = self.rules.check(line, item, raw)
        if problems is not None:
            for problem in problems:
                self.problem(problem)
            return
        if len(self.accepted) >= self.max_requests:
            raise self._too_many(line)
        if len(self.preview) < PREVIEW_REQUESTS:
            self._preview(line, custom_id, params, raw)
        self.estimate.add(params)
        accepted = self.accepted
        accepted.custom_ids.append(custom_id)
        accepted.lines.append(line)
        accepted.lengths.append(len(raw))
        accepted.write(raw + SEPARATOR)

    # A segment's result
    def run(self, lines: Lines, fmt: str, csv_options: CsvOptions | None = None) -> SegmentResult:
        """Read the segment through; whatever the file does, a result comes back (a cap, a
        damaged gzip or a bug of ours ends the reading with a problem that says so)."""
        try:
            if fmt == "csv":
                if csv_options is None:
                    # A bug of ours, not of the file: reported like any other below.
                    raise TypeError("A CSV segment is read with its CsvOptions.")
                self.run_csv(lines, csv_options)
            else:
                self.run_jsonl(lines)
        except CheckStopped:
            self.accepted.discard()
            self._close_report(delete=True)
            raise
        except StopReading as stop:
            self.problem(stop.problem)
            self.complete = False
        except Exception as error:
            logger.exception("Checking a %s upload failed", fmt)
            self.problem(
                Problem(
                    None,
                    "",
                    f"The file could not be read to the end ({type(error).__name__}).",
                    "Check that it is a JSONL or CSV file; if it is, report this file to us.",
                )
            )
            self.complete = False
        self.accepted.finish()
        report_path = self._close_report()
        return SegmentResult(
            accepted=self.accepted,
            first_line=self.rules.first_line,
            problems=list(self.log.first),
            problem_count=self.log.count,
            report_path=report_path,
            rejected=self.rejected,
            estimate=self.estimate,
            preview=self.preview,
            lines_read=lines.lines_read,
            complete=self.complete,
        )

    def _close_report(self, delete: bool = False) -> str | None:
        if self.report_file is None:
            return None
        self.log.detach()
        self.report_file.close()
        path = self.report_file.name
        if delete:
            Path(path).unlink(missing_ok=True)
            return None
        return path


# Several processes -----------------------------------------------------------------------------


# Counting line breaks runs about eight times as fast as checking the lines: the last segment,
# checked by the process that first counts the lines of all the others, is this much shorter.
COUNTING_SHARE = 1 / 8


def _segment_cuts(open_range, size: int, count: int) -> list[int]:
    """Where `count` segments of a plain file start (each at a line), and its size: the last
    segment a little shorter than the others (COUNTING_SHARE)."""
    weights = [1.0] * (count - 1) + [1.0 - COUNTING_SHARE]
    ends = list(accumulate(weights))
    cuts = [0]
    for end in ends[:-1]:
        guess = max(cuts[-1], int(size * end / ends[-1]))
        with open_range(guess, min(size, guess + (1 << 20))) as handle:
            block = handle.read()
        newline = block.find(b"\n")
        if newline == -1 or guess + newline + 1 >= size:
            break
        cuts.append(guess + newline + 1)
    cuts.append(size)
    return cuts


def _count_lines(open_range, start: int, end: int) -> int:
    """The line breaks in bytes [start, end), at memory speed."""
    lines = 0
    buffer = bytearray(1 << 22)
    with open_range(start, end) as handle:
        while count := handle.readinto(buffer):
            lines += buffer.count(b"\n", 0, count)
    return lines


def _shared_body_file() -> str:
    """The file every segment writes its requests into, BODY_HEAD written (check_in_segments)."""
    descriptor, path = tempfile.mkstemp(dir=scratch_dir(), prefix="check-", suffix=".body")
    with os.fdopen(descriptor, "wb") as body:
        body.write(BODY_HEAD)
    return path


def _pass_over(open_range, start: int, end: int, first_line: int, make_check, limits):
    lines = Lines(open_range(start, end), limits, start_line=first_line)
    try:
        return make_check().run(lines, "jsonl")
    finally:
        lines.raw.close()


class Progress:
    """Lines, bytes, requests and problems of every segment, in memory the processes share."""

    FORMAT = "qqqq"

    def __init__(self, segments: int):
        import mmap

        self.size = struct.calcsize(self.FORMAT)
        self.memory = mmap.mmap(-1, self.size * segments)

    def write(self, segment: int, *values: int) -> None:
        struct.pack_into(self.FORMAT, self.memory, segment * self.size, *values)

    def total(self) -> tuple[int, int, int, int]:
        totals = [0, 0, 0, 0]
        for offset in range(0, len(self.memory), self.size):
            for index, value in enumerate(struct.unpack_from(self.FORMAT, self.memory, offset)):
                totals[index] += value
        lines, raw_bytes, requests, problems = totals
        return lines, raw_bytes, requests, problems


def check_in_segments(
    open_range: Callable[[int, int], object],
    size: int,
    *,
    processes: int,
    make_check: Callable[..., Check],
    limits: Limits,
    progress: Callable[[int, int, int, int], bool] | None,
    keep_bodies: bool = False,
) -> list[SegmentResult]:
    """Check a plain JSONL file of `size` bytes in `processes` segments at once: the last in
    this process, the others in forked children that send their results back through a pipe.
    `open_range(start, end)` gives a stream of those bytes (a child opens its own).

    A segment names its lines as a single pass would, so it starts once the lines before it are
    counted: the first at once, each next one as soon as this process has counted the lines of
    the one before (at memory speed, while the children check), and the last here.

    With `keep_bodies`, every segment writes its requests into one file, each from where the
    one before it can end at the most: a segment's bytes plus its lines (a request takes its
    line's bytes and one more). In a file of valid lines that is exactly where it does end, so
    the segments' requests lie one after another and the file is the create body as it stands.

    The children only read the file and compute; they touch no database and no connection of
    this process, and leave with os._exit, so nothing of this process is closed twice.
    """
    cuts = _segment_cuts(open_range, size, processes)
    last = len(cuts) - 2
    shared = Progress(last + 1)
    started = time.monotonic()
    body_path = _shared_body_file() if keep_bodies else None

    def reporter(segment: int):
        def report(lines, raw_bytes, requests, problems) -> bool:
            shared.write(segment, lines, raw_bytes, requests, problems)
            if segment == last and progress is not None:
                return progress(*shared.total())
            # A child whose parent is gone (killed, or reaped by a time limit) stops.
            return segment == last or os.getppid() != 1

        return report

    def pass_over(segment: int, first_line: int, body_start: int) -> SegmentResult:
        place = None if body_path is None else BodyPlace(body_path, body_start, segment == last)
        return _pass_over(
            open_range,
            cuts[segment],
            cuts[segment + 1],
            first_line,
            lambda: make_check(progress=reporter(segment), body_place=place),
            _segment_limits(limits, started, first_line),
        )

    children = []
    try:
        first_line, body_start = 1, len(BODY_HEAD)
        for segment in range(last):
            children.append(_fork(partial(pass_over, segment, first_line, body_start)))
            lines = _count_lines(open_range, cuts[segment], cuts[segment + 1])
            first_line += lines
            body_start += cuts[segment + 1] - cuts[segment] + lines
        own = pass_over(last, first_line, body_start)
        results: list[SegmentResult] = []
        for pid, reader in children:
            with os.fdopen(reader, "rb") as incoming:
                status, value = pickle.loads(incoming.read())  # noqa: S301 (our own child)
            os.waitpid(pid, 0)
            if status != "ok":
                raise RuntimeError(f"A checking process failed: {value}")
            results.append(value)
        children = []
        results.append(own)
    except BaseException:
        if body_path is not None:
            Path(body_path).unlink(missing_ok=True)
        raise
    finally:
        for pid, _ in children:
            with _suppress_process_errors():
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return results


def _fork(work: Callable[[], SegmentResult]) -> tuple[int, int]:
    """Run `work` in a forked child; its result (or its error) comes back through the pipe
    whose reading end is returned with the child's pid."""
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        # Python warns about forking a process that has threads (a Celery worker's, a test
        # server's): a child that inherited a lock held by another thread could hang on it.
        # The child here takes no lock of the parent's: it reads a file, computes, writes to
        # a pipe and leaves with os._exit (logging's and the import system's locks are made
        # anew in a child).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            payload = pickle.dumps(("ok", work()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # handed to the parent, which reports it
            payload = pickle.dumps(("error", repr(error)))
            code = 1
        with os.fdopen(writer, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(writer)
    return pid, reader


def _segment_limits(limits: Limits, started: float, first_line: int) -> Limits:
    return Limits(
        max_bytes=limits.max_bytes,
        max_lines=max(0, limits.max_lines - first_line + 1),
        max_line_bytes=limits.max_line_bytes,
        max_seconds=None
        if limits.max_seconds is None
        else max(0.0, limits.max_seconds - (time.monotonic() - started)),
    )


class _suppress_process_errors:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, (ProcessLookupError, ChildProcessError))


# Putting segments together ---------------------------------------------------------------------


@dataclass
class Merged:
    report: Report
    segments: list[SegmentResult]
    # Per segment: which of its accepted requests a later look dropped (a custom_id already used
    # in an earlier segment), and where each kept one goes: its batch and its offset in that
    # batch's body.
    dropped: list[set[int]]
    parts_of: list[array]
    offsets: list[array]
    report_paths: list[str]


def merge(results: list[SegmentResult], *, oversize: str, notes: list[str] | None = None) -> Merged:
    """The segments' findings as one report, as if one pass had read the file."""
    report = Report(notes=list(notes or []))
    seen: dict[str, int] = {}
    dropped: list[set[int]] = []
    cross: list[Problem] = []
    estimate = Estimate()
    complete = True
    used: list[SegmentResult] = []
    for index, result in enumerate(results):
        if not complete:
            # An earlier segment stopped at a cap: what follows it was never meant to be read.
            result.accepted.discard()
            if result.report_path:
                Path(result.report_path).unlink(missing_ok=True)
            continue
        used.append(result)
        drop: set[int] = set()
        # Set operations in C: a custom_id used again in a later segment is rare, and only
        # then are the segment's requests walked one by one.
        repeated = seen.keys() & result.first_line.keys() if seen else set()
        if repeated:
            for position, custom_id in enumerate(result.accepted.custom_ids):
                if custom_id in repeated:
                    drop.add(position)
                    line = result.accepted.lines[position]
                    cross.append(
                        Problem(
                            line,
                            "custom_id",
                            f"custom_id {custom_id!r} was already used on line "
                            f"{seen[custom_id]:,}.",
                            "Give every request its own custom_id.",
                        )
                    )
                    result.rejected.add(line)
        if index + 1 < len(results):  # what the segments after this one are checked against
            earlier = {custom_id: seen[custom_id] for custom_id in repeated}
            seen.update(result.first_line)
            seen.update(earlier)  # a custom_id's first line is the one in the earliest segment
        dropped.append(drop)
        estimate.merge(result.estimate)
        complete = result.complete
    if cross:
        _remove_from_estimate(estimate, used, dropped)
    report.request_count = sum(len(r.accepted) for r in used) - sum(len(d) for d in dropped)
    report.rejected_count = sum(len(result.rejected) for result in used)
    report.lines_read = sum(result.lines_read for result in used)
    report.complete = complete
    parts_of, offsets, splitter = _place(used, dropped)
    report.request_bytes = sum(sum(result.accepted.lengths) for result in used) - sum(
        result.accepted.lengths[p] for result, drop in zip(used, dropped, strict=True) for p in drop
    )
    report.parts = [{"requests": part.requests, "bytes": part.bytes} for part in splitter.parts]
    for result in used:
        report.preview.extend(result.preview[: PREVIEW_REQUESTS - len(report.preview)])
    report.estimate = estimate.as_dict()
    report.models = {row["model"]: row["requests"] for row in report.estimate["models"]}
    extra: list[Problem] = []
    most = settings.MAX_UPLOAD_BATCHES * settings.MAX_BATCH_REQUESTS
    if report.request_count > most:
        extra.append(
            Problem(
                None,
                "",
                f"The file holds more than {most:,} requests: one upload makes at most "
                f"{settings.MAX_UPLOAD_BATCHES} batches.",
                "Split the file, or submit it in several uploads.",
            )
        )
        report.complete = False
    if report.request_count == 0 and not any(r.problem_count for r in used) and not cross:
        extra.append(Problem(None, "", "The file holds no requests.", "Add at least one request."))
    if len(report.parts) > 1 and oversize == "refuse":
        extra.append(
            Problem(
                None,
                "",
                f"The file holds {report.request_count:,} requests "
                f"({report.request_bytes / 1e6:,.1f} MB); one batch takes at most "
                f"{settings.MAX_BATCH_REQUESTS:,} requests and "
                f"{settings.MAX_BATCH_BYTES / 1e6:,.0f} MB.",
                "Choose “split into several batches”, or cut the file.",
            )
        )
    problems = [problem for result in used for problem in result.problems] + cross
    problems.sort(key=lambda problem: problem.line or 0)
    report.problems = (extra + problems)[:FIRST_PROBLEMS]
    report.problem_count = sum(r.problem_count for r in used) + len(cross) + len(extra)
    paths = [result.report_path for result in used if result.report_path]
    if paths and (cross or extra):
        paths.append(_problem_rows_file(extra + cross, str(Path(paths[0]).parent)))
    return Merged(report, used, dropped, parts_of, offsets, paths)


def _place(used: list[SegmentResult], dropped: list[set[int]]):
    """Each kept request's batch and offset in that batch's body, in file order. A file that
    fits one batch (nearly every file) is placed with a running sum, in C."""
    splitter = Splitter()
    lengths = [result.accepted.lengths for result in used]
    total = sum(len(each) for each in lengths) - sum(len(drop) for drop in dropped)
    size = sum(sum(each) for each in lengths) + total * len(SEPARATOR)
    parts_of: list[array] = []
    offsets: list[array] = []
    if (
        not any(dropped)
        and total <= splitter.max_requests
        and (size + len(BODY_HEAD) + len(BODY_TAIL) <= splitter.max_bytes)
    ):
        start = len(BODY_HEAD)
        for each in lengths:
            steps = map(add, each, repeat(len(SEPARATOR)))
            running = array("q", accumulate(steps, initial=start))

            start = running.pop()
            offsets.append(running)
            parts_of.append(array("l", [0]) * len(each))
        if total:
            splitter.parts.append(
                Part(requests=total, bytes=size + len(BODY_HEAD) + len(BODY_TAIL))
            )
        return parts_of, offsets, splitter
    positions: dict[int, int] = {}
    for each, drop in zip(lengths, dropped, strict=True):
        part_list = array("l", [-1]) * len(each)
        offset_list = array("q", [0]) * len(each)
        for position, length in enumerate(each):
            if position in drop:
                continue
            part = splitter.place(length)
            offset = positions.get(part, len(BODY_HEAD))
            part_list[position] = part
            offset_list[position] = offset
            positions[part] = offset + length + len(SEPARATOR)
        parts_of.append(part_list)
        offsets.append(offset_list)
    return parts_of, offsets, splitter


def _remove_from_estimate(estimate: Estimate, used, dropped) -> None:
    """Take the requests found to be duplicates across segments out of the estimate again; their
    bytes are read back from the segments' bodies (or not at all when none were kept)."""
    for result, drop in zip(used, dropped, strict=True):
        if not drop or not result.accepted.body_path:
            continue
        starts = result.accepted.offsets()
        with open(result.accepted.body_path, "rb") as body:
            for position in drop:
                body.seek(starts[position])
                raw = body.read(result.accepted.lengths[position])
                estimate.remove(orjson.loads(raw)["params"])


def _problem_rows_file(problems: list[Problem], directory: str) -> str:
    with tempfile.NamedTemporaryFile(
        dir=directory, prefix="check-", suffix=".problems.csv", delete=False
    ) as handle:
        log = ProblemLog(handle, header=False)
        for problem in problems:
            log.add(problem)
        log.detach()
        return handle.name


@dataclass
class PartBody:
    path: str
    size: int
    requests: int


def compose_bodies(merged: Merged, directory: str) -> list[PartBody]:
    """Write each batch's create body. When every request goes into one batch and the segments'
    requests lie one after another in one file (see Accepted), that file is the body once its
    last separator is cut and BODY_TAIL written. Otherwise runs of consecutive requests are
    copied from the segments' bodies in large blocks, and the last `,` of each batch is cut."""
    if len(merged.report.parts) == 1 and not any(merged.dropped):
        contiguous = _contiguous_body(merged.segments)
        if contiguous is not None:
            path, end = contiguous
            with open(path, "r+b") as body:
                body.truncate(end - len(SEPARATOR))
                body.seek(0, os.SEEK_END)
                body.write(BODY_TAIL)
            size = end - len(SEPARATOR) + len(BODY_TAIL)
            return [PartBody(path, size, merged.report.parts[0]["requests"])]
    count = len(merged.report.parts)
    outputs = [
        tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below)
            dir=directory, prefix="part-", suffix=".json", delete=False
        )
        for _ in range(count)
    ]
    try:
        for out in outputs:
            out.write(BODY_HEAD)
        for result, drop, parts_of in zip(
            merged.segments, merged.dropped, merged.parts_of, strict=True
        ):
            accepted = result.accepted
            count = len(accepted)
            if not count:
                continue
            body_path = accepted.body_path
            if body_path is None:
                raise RuntimeError("Composing bodies needs a check made with keep_bodies=True.")
            with open(body_path, "rb") as body:
                if not drop and parts_of[0] == parts_of[count - 1]:
                    # Every request of the segment, in one batch: its requests are one run.
                    _copy(body, accepted.body_start, accepted.body_end, outputs[parts_of[0]])
                    continue
                starts = accepted.offsets()
                run: tuple[int, int] | None = None  # (start, part) of the run being gathered
                end = 0
                for position in range(count + 1):
                    part = None if position == count or position in drop else parts_of[position]
                    if run is not None and part != run[1]:
                        _copy(body, run[0], end, outputs[run[1]])
                        run = None
                    if part is None:
                        continue
                    if run is None:
                        run = (starts[position], part)
                    end = starts[position] + accepted.lengths[position] + len(SEPARATOR)
        bodies = []
        for index, out in enumerate(outputs):
            out.flush()
            # Every request was copied with its separator; the last one of a batch has none.
            out.seek(-len(SEPARATOR), os.SEEK_END)
            out.truncate()
            out.write(BODY_TAIL)
            out.close()
            bodies.append(
                PartBody(
                    out.name, os.path.getsize(out.name), merged.report.parts[index]["requests"]
                )
            )
        return bodies
    except BaseException:
        for out in outputs:
            out.close()
            Path(out.name).unlink(missing_ok=True)
        raise


def _contiguous_body(segments: list[SegmentResult]) -> tuple[str, int] | None:
    """The one file in which the segments' requests follow each other from just after
    BODY_HEAD, with nothing between them, and where the last one ends; None when they do not."""
    paths = {result.accepted.body_path for result in segments if len(result.accepted)}
    if len(paths) != 1 or None in paths:
        return None
    expected = len(BODY_HEAD)
    for result in segments:
        if not len(result.accepted):
            continue
        if result.accepted.body_start != expected:
            return None
        expected = result.accepted.body_end
    path = paths.pop()
    return None if path is None else (path, expected)


def _copy(source, start: int, end: int, out) -> None:
    """Bytes [start, end) of `source` appended to `out`: inside the kernel where it can
    (copy_file_range, no trip through Python; a tenth of a second less for 100 MB), else in
    4 MB blocks."""
    left = end - start
    if hasattr(os, "copy_file_range") and left > 0:
        out.flush()
        try:
            while left > 0:
                copied = os.copy_file_range(source.fileno(), out.fileno(), left, start)
                if not copied:
                    break
                start += copied
                left -= copied
        except OSError:  # a file system that cannot: the blocks below take the rest
            pass
        # The copy moved the file's own position, not the buffered writer's idea of it.
        out.seek(0, os.SEEK_END)
    source.seek(start)
    while left > 0:
        block = source.read(min(left, 1 << 22))
        if not block:
            break
        out.write(block)
        left -= len(block)


def index_rows(merged: Merged, submission_id: int):
    """(submission, part, custom_id, line, offset, length) of every kept request, in file
    order: a zip of the segments' arrays, so 100,000 rows cost no Python loop."""
    for result, drop, parts_of, offsets in zip(
        merged.segments, merged.dropped, merged.parts_of, merged.offsets, strict=True
    ):
        accepted = result.accepted
        columns = (parts_of, accepted.custom_ids, accepted.lines, offsets, accepted.lengths)
        rows: Iterator[tuple[Any, ...]] = zip(repeat(submission_id), *columns, strict=False)
        if drop:
            rows = (row for position, row in enumerate(rows) if position not in drop)
        yield from rows


# A whole check -----------------------------------------------------------------------------------


def check_file(
    open_range: Callable[[int, int | None], object],
    size: int,
    fmt: str,
    *,
    models: list[dict] | None,
    csv_options: CsvOptions | None = None,
    oversize: str = "split",
    keep_bodies: bool = False,
    report_dir: str | None = None,
    progress: Callable[[int, int, int, int], bool] | None = None,
    limits: Limits | None = None,
    processes: int = 1,
) -> Merged:
    """Check a whole file: `open_range(start, end)` streams its bytes (`end` None: to the end).

    A plain JSONL file of CHECK_PARALLEL_MIN_BYTES or more is read by `processes` processes at
    once when the system can fork; anything else (gzip, CSV, a small file) in one pass.
    """
    limits = limits or Limits.from_settings(settings.CHECK_MAX_SECONDS)
    notes = []
    if models is None:
        notes.append(
            "The workspace's model list could not be read, so model names were not checked."
        )

    def make_check(progress=None, body_place=None) -> Check:
        return Check(
            models=models,
            keep_bodies=keep_bodies,
            report_dir=report_dir,
            progress=progress,
            body_place=body_place,
        )

    if size == 0:
        check = make_check()
        check.problem(
            Problem(None, "", "The file is empty.", "Choose the file that holds your requests.")
        )
        result = check.run(Lines(_Nothing(), limits), fmt, csv_options)
        return merge([result], oversize=oversize, notes=notes)
    if (
        processes > 1
        and fmt == "jsonl"
        and size >= settings.CHECK_PARALLEL_MIN_BYTES
        and hasattr(os, "fork")
        and not _gzipped(open_range)
    ):
        results = check_in_segments(
            open_range,
            size,
            processes=processes,
            make_check=make_check,
            limits=limits,
            progress=progress,
            keep_bodies=keep_bodies,
        )
    else:
        lines = Lines(open_range(0, None), limits)
        try:
            results = [make_check(progress=progress).run(lines, fmt, csv_options)]
        finally:
            lines.raw.close()
    return merge(results, oversize=oversize, notes=notes)


def _gzipped(open_range) -> bool:
    with open_range(0, 2) as head:
        return head.read(2) == GZIP_MAGIC


class _Nothing:
    def read(self, size=-1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def discard(merged: Merged) -> None:
    """Remove the temporary files a check left (its bodies and problem rows)."""
    for result in merged.segments:
        result.accepted.discard()
        if result.accepted.body_path:  # a file the segments shared, or a body not moved
            Path(result.accepted.body_path).unlink(missing_ok=True)
    for path in merged.report_paths:
        Path(path).unlink(missing_ok=True)
