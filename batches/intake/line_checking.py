"""Checking lines: one pass over one segment of an upload (the whole file, unless it is checked
in several), every line read once and checked once, its valid requests kept (batches.intake.
accepted) and every problem logged.

A valid JSONL line is kept byte for byte, so nothing is encoded twice and the API receives
exactly what the file said. A CSV row becomes a request through its template and is encoded
once, with orjson.

`Check.run_jsonl` is the hot loop that every line of a file passes through: the rules and the
bookkeeping of an accepted request are written out inline there, and every name it uses is a
local or a global of this module, because a function call per line is a measurable share of the
whole check. Keep it that way: no helper calls, no attribute lookups added per line. Whatever a
line holds, its checking ends with that line (a line that raises is its own problem), and a cap
or a damaged file ends the pass with a problem that says so; the pass always gives a result.
"""

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from django.conf import settings

from batches.intake.accepted import SEPARATOR, Accepted, BodyPlace, SegmentResult
from batches.intake.bounds import MAX_INTEGER, integers_written_as_integers
from batches.intake.estimating import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    Estimate,
    request_tokens,
)
from batches.intake.problems import Problem, ProblemLog
from batches.intake.reading import (
    CsvError,
    CsvRecord,
    Lines,
    StopReading,
    csv_records,
    line_too_long_problem,
    not_utf8_problem,
)
from batches.intake.rules import Rules, clip, may_hold_nul
from batches.intake.templating import CsvOptions
from foundations.schemas import may_break_rules, rule_problems

logger = logging.getLogger(__name__)

PREVIEW_REQUESTS = 5
# A preview shows at most this much of a request; the whole one is a link away.
PREVIEW_BYTES = 4096
# Requests up to this size are shown indented; bigger ones as their first bytes.
PRETTY_MAX_BYTES = 64 * 1024


class CheckStopped(Exception):
    """The person stopped the check, or this process lost its claim on it."""


# The words of a line whose checking raised what nothing foresaw (Check._unforeseen): the bounds
# are there so that no line ever gets them, and the fuzz run (bench/fuzz_intake.py) counts them.
UNFORESEEN = "could not be checked"


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
