"""Intake: read an uploaded JSONL or CSV file, line by line from disk, into batch requests, and
report every problem the API would only find a day later.

Memory does not grow with the file: lines are read one at a time (through gzip when the file is
compressed), and what is kept per request is its `custom_id` and line number (to name the first
line that used a duplicate). Problems are written to a report file as they are found; only the
first `FIRST_PROBLEMS` are kept in memory for the page.
"""

import codecs
import csv
import gzip
import io
import json
import logging
import re
import string
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from batches.pricing import Estimate
from dashboard.schemas import CUSTOM_ID
from dashboard.schemas import validator as schema_validator

# The longest line read: one request can carry images and PDFs, but not more than this. A longer
# line is reported and skipped without being held in memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
FIRST_PROBLEMS = 100
PREVIEW_REQUESTS = 5
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = codecs.BOM_UTF8
logger = logging.getLogger(__name__)
CONTENT_BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "search_result",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
)
FIX_NESTING = "Flatten it: no real request nests lists and objects hundreds of levels deep."
FIX_UTF8 = "Save the file as UTF-8 (in Excel: “CSV UTF-8”; in an editor: encoding UTF-8)."


@dataclass(frozen=True)
class Problem:
    line: int | None  # the line (JSONL) or row (CSV); None for the whole file
    field: str
    message: str
    fix: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message, "fix": self.fix}


@dataclass
class CsvOptions:
    template: str
    model: str
    max_tokens: int
    id_column: str = ""
    system: str = ""
    temperature: float | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "CsvOptions":
        return cls(**{key: values.get(key) for key in cls.__dataclass_fields__ if key in values})

    def placeholders(self) -> list[str]:
        """The `{column}` names of the template; ValueError for a malformed one."""
        advice = (
            "Placeholders are plain column names in braces, like {review}; "
            "write {{ and }} for a literal brace."
        )
        names = []
        try:
            for _, name, spec, conversion in string.Formatter().parse(self.template):
                if name is None:
                    continue
                if name == "" or spec or conversion:
                    raise ValueError(advice)
                names.append(name)
        except ValueError as exc:
            if str(exc) == advice:
                raise
            raise ValueError(f"The template has an unmatched brace ({exc}). {advice}") from None
        return names

    def render(self, row: dict[str, str]) -> str:
        # Plain lookups only: never str.format, which would allow attribute access.
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.template):
            parts.append(literal)
            if name is not None:
                parts.append(row.get(name, ""))
        return "".join(parts)

    def params(self, prompt: str) -> dict:
        params: dict = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self.system:
            params["system"] = self.system
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params


@dataclass
class Request:
    line: int
    custom_id: str
    params: dict
    size: int  # bytes of its compact JSON in a create body, with the separating comma
    part: int = 0  # which of the submission's batches it goes in


@dataclass
class Report:
    request_count: int = 0
    request_bytes: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    models: Counter = field(default_factory=Counter)
    estimate: dict = field(default_factory=dict)
    parts: list[dict] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.request_count > 0


class Splitter:
    """Places requests, in file order, into batches within the API's limits."""

    # A create body is {"requests":[...]}: the brackets cost this much besides the requests.
    ENVELOPE_BYTES = len(b'{"requests":[]}')

    def __init__(self, max_requests: int | None = None, max_bytes: int | None = None):
        self.max_requests = max_requests or settings.MAX_BATCH_REQUESTS
        self.max_bytes = max_bytes or settings.MAX_BATCH_BYTES
        self.parts: list[dict] = []

    def place(self, size: int) -> int:
        current = self.parts[-1] if self.parts else None
        if (
            current is None
            or current["requests"] >= self.max_requests
            or current["bytes"] + size > self.max_bytes - self.ENVELOPE_BYTES
        ):
            current = {"requests": 0, "bytes": 0}
            self.parts.append(current)
        current["requests"] += 1
        current["bytes"] += size
        return len(self.parts) - 1


def field_name(path) -> str:
    """`["params", "messages", 0, "content"]` as `params.messages[0].content`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _value_at(document, path):
    for part in path:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def schema_problems(line: int, item: dict) -> list[Problem]:
    problems = []
    try:
        errors = list(schema_validator("MessageBatchIndividualRequestParams").iter_errors(item))
    except ValueError:  # the validator's recursion limit, on absurdly nested input
        return [Problem(line, "", "The request is nested too deeply to check.", FIX_NESTING)]
    for error in errors:
        path = list(error.instance_path)
        if path == ["custom_id"] and type(error.kind).__name__ != "Type":
            continue  # the pattern and length are checked with a clearer message
        where = field_name(path)
        message, fix = error.message, "Compare it with the Messages API reference."
        kind = type(error.kind).__name__
        if kind == "Required":
            missing = re.search(r'"([^"]+)" is a required property', error.message)
            name = missing.group(1) if missing else "a field"
            where = field_name([*path, name])
            message = f"{name} is required."
            fix = f"Add {name}."
        elif kind == "AdditionalProperties":
            extra = re.findall(r"'([^']+)'", error.message)
            where = field_name([*path, extra[0]]) if extra else where
            message = f"{', '.join(extra) or 'A field'} is not a field the API accepts here."
            fix = "Remove it, or check its spelling."
        elif kind == "Type":
            message = error.message + "."
            fix = "Write the value with the right JSON type (a number has no quotes)."
        elif kind == "AnyOf" and path and path[-1] == "content":
            message, fix = _content_problem(_value_at(item, path))
        elif kind in ("Maximum", "Minimum", "ExclusiveMinimum", "ExclusiveMaximum"):
            message = error.message + "."
            fix = "Use a value within the allowed range."
        elif kind == "Enum":
            message = error.message + "."
            fix = "Use one of the listed values."
        problems.append(Problem(line, where, message, fix))
    return problems


def _content_problem(content) -> tuple[str, str]:
    if isinstance(content, list):
        for index, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in CONTENT_BLOCK_TYPES:
                return (
                    f"content[{index}] has type {kind!r}, which is not a content block type.",
                    "Use a block of type " + ", ".join(CONTENT_BLOCK_TYPES[:5]) + ", ….",
                )
        return (
            "A content block is missing a field or has a wrong one.",
            'Check each block against the Messages API reference (e.g. text needs "text").',
        )
    return (
        "content must be a string or a list of content blocks.",
        'Write "content": "your prompt" or a list such as [{"type": "text", "text": "…"}].',
    )


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _character_problems(line: int, encoded: str) -> list[Problem]:
    """Characters JSON can escape but text cannot hold: a NUL (no database stores it in text)
    and half of a surrogate pair (not a character at all)."""
    problems = []
    # json.dumps writes a NUL as \u0000; the walk confirms it is not an escaped backslash.
    if "\\u0000" in encoded and _holds_nul(json.loads(encoded)):
        problems.append(
            Problem(
                line,
                "",
                "The request contains a NUL character (\\u0000).",
                "Remove it; it is almost always left over from a binary file.",
            )
        )
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError as exc:
        half = ord(exc.object[exc.start])
        problems.append(
            Problem(
                line,
                "",
                f"The request contains half of a surrogate pair (\\u{half:04x}), which is not "
                "a character.",
                "Write the character itself, or both halves of its \\u escape.",
            )
        )
    return problems


class Validator:
    """Checks requests one at a time and keeps what the report needs."""

    def __init__(self, *, models: list[dict] | None, problems_out=None, oversize="split"):
        self.report = Report()
        self.models = {model["id"]: model for model in models} if models else None
        self.first_line: dict[str, int] = {}
        self.splitter = Splitter()
        self.estimate = Estimate()
        self.problems_out = problems_out  # a csv.writer for the full report, or None
        self.oversize = oversize
        if self.models is None:
            self.report.notes.append(
                "The workspace's model list could not be read, so model names were not checked."
            )

    def problem(self, problem: Problem) -> None:
        self.report.problem_count += 1
        if len(self.report.problems) < FIRST_PROBLEMS:
            self.report.problems.append(problem)
        if self.problems_out is not None:
            self.problems_out.writerow(
                [problem.line or "", problem.field, problem.message, problem.fix]
            )

    def check(self, line: int, item) -> Request | None:
        """One request from the file: the API's rules, and what batches refuse besides."""
        if not isinstance(item, dict):
            self.problem(
                Problem(
                    line,
                    "",
                    f"The line is a JSON {type(item).__name__}, not an object.",
                    'Each line must be one object: {"custom_id": "…", "params": {…}}.',
                )
            )
            return None
        problems = []
        custom_id = item.get("custom_id")
        if isinstance(custom_id, str):
            if not CUSTOM_ID.match(custom_id):
                problems.append(
                    Problem(
                        line,
                        "custom_id",
                        f"custom_id {custom_id[:80]!r} is not 1 to 64 letters, digits, _ or -.",
                        "Use only a-z, A-Z, 0-9, _ and -, at most 64 characters.",
                    )
                )
            elif custom_id in self.first_line:
                problems.append(
                    Problem(
                        line,
                        "custom_id",
                        f"custom_id {custom_id!r} was already used on line "
                        f"{self.first_line[custom_id]}.",
                        "Give every request its own custom_id.",
                    )
                )
            else:
                self.first_line[custom_id] = line
        problems.extend(schema_problems(line, item))
        params = item.get("params")
        if isinstance(params, dict):
            problems.extend(self._batch_rules(line, params))
        encoded = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        problems.extend(_character_problems(line, encoded))
        for problem in problems:
            self.problem(problem)
        if problems:
            return None
        size = len(encoded.encode()) + 1
        request = Request(line, custom_id, params, size)
        self.count(request)
        return request

    def _batch_rules(self, line: int, params: dict) -> list[Problem]:
        problems = []
        if params.get("stream") is True:
            problems.append(
                Problem(
                    line,
                    "params.stream",
                    "Batches do not stream: stream must not be true.",
                    'Remove "stream" from params.',
                )
            )
        if params.get("messages") == []:
            problems.append(
                Problem(
                    line,
                    "params.messages",
                    "messages is empty.",
                    'Add at least one message: [{"role": "user", "content": "…"}].',
                )
            )
        max_tokens = params.get("max_tokens")
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens < 1:
            problems.append(
                Problem(
                    line,
                    "params.max_tokens",
                    f"max_tokens is {max_tokens}, less than the minimum of 1.",
                    "Ask for at least 1 output token.",
                )
            )
        model = params.get("model")
        if self.models is not None and isinstance(model, str):
            spec = self.models.get(model)
            if spec is None:
                close = sorted(name for name in self.models if name.startswith(model[:10]))[:3]
                problems.append(
                    Problem(
                        line,
                        "params.model",
                        f"Model {model!r} is not available in this workspace.",
                        "Use one of: " + ", ".join(close or sorted(self.models)[:4]) + ".",
                    )
                )
            else:
                limit = spec.get("max_tokens")
                max_tokens = params.get("max_tokens")
                if isinstance(limit, int) and isinstance(max_tokens, int) and max_tokens > limit:
                    problems.append(
                        Problem(
                            line,
                            "params.max_tokens",
                            f"max_tokens {max_tokens:,} is more than {model} allows ({limit:,}).",
                            f"Use at most {limit}.",
                        )
                    )
        return problems

    def count(self, request: Request) -> None:
        report = self.report
        report.request_count += 1
        most = settings.MAX_UPLOAD_BATCHES * settings.MAX_BATCH_REQUESTS
        if report.request_count > most:
            raise _too_large(request.line, f"{most:,} requests")
        report.request_bytes += request.size
        report.models[request.params.get("model", "")] += 1
        self.estimate.add(request.params)
        request.part = self.splitter.place(request.size)
        if len(report.preview) < PREVIEW_REQUESTS:
            report.preview.append(
                {"line": request.line, "custom_id": request.custom_id, "params": request.params}
            )

    def finish(self) -> Report:
        report = self.report
        report.parts = self.splitter.parts
        report.estimate = self.estimate.as_dict()
        if report.request_count == 0 and report.problem_count == 0:
            self.problem(
                Problem(None, "", "The file holds no requests.", "Add at least one request.")
            )
        if len(report.parts) > 1 and self.oversize == "refuse":
            self.problem(
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
        return report


# Reading the file --------------------------------------------------------------------------------


def open_binary(path: Path):
    """The file's bytes, decompressed on the fly when it is gzipped (by content, not name)."""
    handle = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    magic = handle.read(2)
    handle.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")
    return handle


class StopReading(Exception):
    """Reading ends here; the problem says why."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


class FileDamaged(StopReading):
    pass


def _too_large(line: int | None, what: str) -> StopReading:
    batches = settings.MAX_UPLOAD_BATCHES
    return StopReading(
        Problem(
            line,
            "",
            f"The file holds more than {what}: one upload makes at most {batches} batches.",
            "Split the file, or submit it in several uploads.",
        )
    )


def physical_lines(path: Path, too_long=None) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the line ending); BOM dropped; gzip damage reported.

    A line over MAX_LINE_BYTES is skipped without being held (it comes out empty), and
    `too_long(number)` is told about it.
    """
    number = read = 0
    # Counted after decompression, so a small gzip bomb stops here too.
    most = settings.MAX_UPLOAD_BATCHES * settings.MAX_BATCH_BYTES * 2
    with open_binary(path) as handle:
        try:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                read += len(raw)
                if read > most:
                    raise _too_large(number, f"{most / 1e9:,.1f} GB of text")
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                    if too_long is not None:
                        too_long(number)
                    yield number, b""
                    continue
                if number == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM) :]
                yield number, raw.rstrip(b"\r\n")
        except (OSError, EOFError, zlib.error) as exc:
            raise FileDamaged(
                Problem(
                    number + 1,
                    "",
                    f"The compressed file is damaged after line {number} ({exc}).",
                    "Compress the file again, or upload it uncompressed.",
                )
            ) from None


def _line_too_long(validator: "Validator"):
    def report(number: int) -> None:
        validator.problem(
            Problem(
                number,
                "",
                f"Line {number} is longer than {MAX_LINE_BYTES // 1_000_000} MB.",
                "Split it: one line holds one request (is a line ending missing?).",
            )
        )

    return report


def _decode(number: int, raw: bytes, validator: Validator) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        validator.problem(
            Problem(
                number,
                "",
                f"Line {number} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
                f"{exc.start + 1}).",
                FIX_UTF8,
            )
        )
        return None


def read_jsonl(path: Path, validator: Validator) -> Iterator[Request]:
    for number, raw in physical_lines(path, _line_too_long(validator)):
        text = _decode(number, raw, validator)
        if text is None or not text.strip():
            continue
        try:
            item = json.loads(text)
        except RecursionError:
            validator.problem(
                Problem(number, "", "The line is nested too deeply to read.", FIX_NESTING)
            )
            continue
        except json.JSONDecodeError as exc:
            validator.problem(
                Problem(
                    number,
                    f"column {exc.colno}",
                    f"Not valid JSON at column {exc.colno}: {exc.msg}.",
                    "Each line must be one complete JSON object; check quotes, commas and "
                    "brackets near that column.",
                )
            )
            continue
        request = validator.check(number, item)
        if request is not None:
            yield request


def _csv_text_lines(path: Path, validator: Validator) -> Iterator[str]:
    """Decoded lines with their endings, as csv.reader wants them; bad UTF-8 reported per line."""
    for number, raw in physical_lines(path, _line_too_long(validator)):
        text = _decode(number, raw, validator)
        yield (text if text is not None else raw.decode("utf-8", "replace")) + "\n"


def read_csv(path: Path, validator: Validator, options: CsvOptions) -> Iterator[Request]:
    try:
        placeholders = options.placeholders()
    except ValueError as exc:
        validator.problem(Problem(None, "template", str(exc), "Fix the template."))
        return
    reader = csv.reader(_csv_text_lines(path, validator), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        validator.problem(
            Problem(1, "", f"The header row cannot be read: {exc}.", "Fix the quoting.")
        )
        return
    header = [name.strip() for name in header]
    missing = [name for name in placeholders if name not in header]
    for name in missing:
        validator.problem(
            Problem(
                1,
                f"{{{name}}}",
                f"The template uses {{{name}}} but the file has no column {name!r}.",
                f"Use one of the columns: {', '.join(header)}.",
            )
        )
    if options.id_column and options.id_column not in header:
        validator.problem(
            Problem(
                1,
                options.id_column,
                f"There is no column {options.id_column!r} to take the custom_id from.",
                f"Pick one of: {', '.join(header)}, or let the dashboard number the rows.",
            )
        )
        return
    if missing:
        return
    row_number = 0
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: name where the row began
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            validator.problem(
                Problem(
                    start,
                    "",
                    f"The row starting at line {start} cannot be read: {exc} (often a quote "
                    "that is never closed).",
                    'Close every quoted field, and write a quote inside one as "".',
                )
            )
            return
        if not any(cell.strip() for cell in cells):
            continue
        row_number += 1
        line = reader.line_num
        if len(cells) != len(header):
            validator.problem(
                Problem(
                    line,
                    "",
                    f"Row {row_number} has {len(cells)} fields but the header has {len(header)}.",
                    "Quote fields that contain commas, and give every row the header's columns.",
                )
            )
            continue
        row = dict(zip(header, cells, strict=True))
        custom_id = row[options.id_column].strip() if options.id_column else f"row-{row_number}"
        prompt = options.render(row)
        if not prompt.strip():
            validator.problem(
                Problem(
                    line,
                    ", ".join(placeholders),
                    f"Row {row_number} gives an empty prompt.",
                    "Fill in the row's cells, or remove the row.",
                )
            )
            continue
        request = validator.check(line, {"custom_id": custom_id, "params": options.params(prompt)})
        if request is not None:
            yield request


def read_requests(path: Path, fmt: str, validator: Validator, csv_options=None):
    if fmt == "csv":
        return read_csv(path, validator, csv_options)
    return read_jsonl(path, validator)


def validate_file(
    path: Path,
    fmt: str,
    *,
    models: list[dict] | None,
    csv_options: CsvOptions | None = None,
    oversize: str = "split",
    report_out: io.TextIOBase | None = None,
) -> Report:
    """Read the whole file once and report on it; nothing is kept but the report."""
    writer = None
    if report_out is not None:
        writer = csv.writer(report_out)
        writer.writerow(["line", "field", "problem", "how to fix it"])
    validator = Validator(models=models, problems_out=writer, oversize=oversize)
    if path.stat().st_size == 0:
        validator.problem(
            Problem(None, "", "The file is empty.", "Choose the file that holds your requests.")
        )
        return validator.report
    try:
        for _ in read_requests(path, fmt, validator, csv_options):
            pass
    except StopReading as stop:
        validator.problem(stop.problem)
    except Exception as error:
        # Whatever a file does to the reader, the user gets a report, not an error page.
        logger.exception("Validating %s failed", path.name)
        validator.problem(
            Problem(
                None,
                "",
                f"The file could not be read to the end ({type(error).__name__}).",
                "Check that it is a JSONL or CSV file; if it is, report this file to us.",
            )
        )
    return validator.finish()


def iter_placed_requests(
    path: Path, fmt: str, csv_options: CsvOptions | None = None
) -> Iterator[Request]:
    """The requests of a file already validated clean, each placed in its batch (`part`)."""
    validator = Validator(models=None)
    yield from read_requests(path, fmt, validator, csv_options)
