"""What makes one request valid, and the words that say what is wrong and how to fix it.

`Rules.check` is the fast path every line takes: one call of a compiled validator (jsonschema-rs)
for the published schema together with what batches refuse besides (`stream`, no messages, a
model the workspace lacks or a `max_tokens` over its limit, written as schema), then a
`custom_id` not used before and no NUL. Only a request that fails goes down the slow path,
`Rules.problems`, which finds every problem on the line and words each one; so the wording
costs nothing on a clean file. Before either, a line is held to the bounds of `bounds` (nesting
depth, integers), and one that breaks them goes no further than the problem that says so.

JSON is read with orjson, which refuses what JSON cannot carry (NaN, Infinity, a number too big
for a double, half of a surrogate pair); a line it refuses is read once more with the standard
library to say where and why.
"""

import functools
import json
import re
from collections.abc import Iterable
from typing import Any, NoReturn

import jsonschema_rs
import orjson

from batches.intake.bounds import (
    MAX_DEPTH,
    READER_DEPTH,
    bounded_components,
    depth_problem,
    integer_problems,
    integers_written_as_integers,
    out_of_range_problem,
    unread_depth_problem,
)
from batches.intake.problems import FIX_NESTING, FIX_UTF8, Problem
from batches.text import holds_nul
from foundations.schemas import is_custom_id, may_break_rules, openapi_document, rule_problems

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
SCHEMA = "MessageBatchIndividualRequestParams"
FIX_NUMBER = "Write the number as a plain finite number, or as a string if it is really text."
# How much of a value a problem quotes: the schema's own messages quote the value whole, and a
# line may hold megabytes.
QUOTE_CHARS = 300
FIELD_CHARS = 200


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_middle(text: str, limit: int) -> str:
    """A message of the schema's with the value it quotes (first) cut short in the middle, so
    what it says of the value (at the end) stays."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[-half:]


def field_name(path: Iterable[str | int]) -> str:
    """`["params", "messages", 0, "content"]` as `params.messages[0].content`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _value_at(document: Any, path: Iterable[str | int]) -> Any:
    for part in path:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def _content_problem(content: object) -> tuple[str, str]:
    if isinstance(content, list):
        for index, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in CONTENT_BLOCK_TYPES:
                return (
                    f"content[{index}] has type {clip(repr(kind), 80)}, which is not a content "
                    "block type.",
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


@functools.lru_cache(maxsize=1)
def bounded_validator() -> jsonschema_rs.Validator:
    """The published request schema with every integer bounded (bounds.bounded_components)."""
    schema = {
        "$ref": f"#/components/schemas/{SCHEMA}",
        "components": bounded_components(openapi_document()["components"]),
    }
    return jsonschema_rs.validator_for(schema, validate_formats=False)


# Branches of an anyOf or oneOf looked into, at most, to find the one a value meant.
BRANCH_LEVELS = 8
# Errors about a `type` or `role` that tell a branch is for another kind of value.
DISCRIMINATING = ("Constant", "Enum", "AnyOf", "OneOfNotValid")


def _type_words(error: jsonschema_rs.ValidationError) -> str | None:
    """What is wrong with a value whose JSON type no branch of an anyOf or oneOf takes (`true is
    not of type "integer" or "null".`); None when some branch takes its type."""
    context = getattr(error.kind, "context", None)
    here = list(error.instance_path)
    wanted = []
    for branch in context or ():
        mismatch = next(
            (
                sub
                for sub in branch
                if type(sub.kind).__name__ == "Type" and list(sub.instance_path) == here
            ),
            None,
        )
        if mismatch is None:
            return None
        wanted.append(mismatch.message.rpartition(" is not of type ")[2])
    if not wanted:
        return None
    shown = clip(orjson.dumps(error.instance).decode(), 80)
    return f"{shown} is not of type {' or '.join(dict.fromkeys(wanted))}."


def _meant(
    error: jsonschema_rs.ValidationError, levels: int = BRANCH_LEVELS
) -> list[jsonschema_rs.ValidationError]:
    """For "… is not valid under any of the schemas listed in the 'oneOf' keyword": the errors of
    the one branch the value meant, told by its discriminator (a `type` or `role` it has, or the
    JSON type of the value), so the problem says what is wrong in it (thinking.budget_tokens is
    not an integer) rather than that no branch fits; the error itself when no one branch is
    meant."""
    context = getattr(error.kind, "context", None)
    if not context or levels == 0:
        return [error]
    here = len(list(error.instance_path))

    def other_branch(branch: list[jsonschema_rs.ValidationError]) -> bool:
        """Whether a branch is for another kind of value: its discriminator or type differs."""
        for sub in branch:
            kind = type(sub.kind).__name__
            sub_path = list(sub.instance_path)
            if len(sub_path) == here + 1:
                if sub_path[-1] in ("type", "role") and kind in DISCRIMINATING:
                    return True
            elif len(sub_path) == here and (
                kind == "Type" or (kind == "Required" and '"type"' in sub.message)
            ):
                return True
        return False

    meant = [branch for branch in context if not other_branch(branch)]
    if len(meant) != 1 or not meant[0]:
        return [error]
    return [found for sub in meant[0] for found in _meant(sub, levels - 1)]


def _worded(
    item: dict, errors: list[jsonschema_rs.ValidationError]
) -> list[jsonschema_rs.ValidationError]:
    """The errors to word: each as `_meant` finds it, but a message's content with a block of no
    known type as it is (`_content_problem` names the block and its type)."""
    worded = []
    for error in errors:
        path = list(error.instance_path)
        if type(error.kind).__name__ == "AnyOf" and path and path[-1] == "content":
            content = _value_at(item, path)
            if not isinstance(content, list) or any(
                (block.get("type") if isinstance(block, dict) else None) not in CONTENT_BLOCK_TYPES
                for block in content
            ):
                worded.append(error)
                continue
        worded.extend(_meant(error))
    return worded


def schema_problems(line: int, item: dict) -> list[Problem]:
    problems = []
    try:
        errors = list(bounded_validator().iter_errors(item))
    except ValueError:  # the validator's recursion limit: bounds.MAX_DEPTH keeps lines below it
        return [Problem(line, "", "The request is nested too deeply to check.", FIX_NESTING)]
    for error in _worded(item, errors):
        path = list(error.instance_path)
        kind = type(error.kind).__name__
        if path == ["custom_id"] and kind != "Type":
            continue  # the pattern and length are checked with a clearer message
        where = clip(field_name(path), FIELD_CHARS)
        message = clip_middle(error.message, QUOTE_CHARS)
        fix = "Compare it with the Messages API reference."
        if kind == "Required":
            missing = re.search(r'"([^"]+)" is a required property', error.message)
            name = missing.group(1) if missing else "a field"
            where = clip(field_name([*path, name]), FIELD_CHARS)
            message = f"{name} is required."
            fix = f"Add {name}."
        elif kind == "AdditionalProperties":
            # By getattr, as `limit` and `context` are read: the kind's type is its base class.
            extra = [clip(str(name), 80) for name in getattr(error.kind, "unexpected", ())]
            where = clip(field_name([*path, extra[0]]), FIELD_CHARS) if extra else where
            shown = ", ".join(name if name.isidentifier() else repr(name) for name in extra)
            message = f"{clip(shown, QUOTE_CHARS) or 'A field'} is not a field the API "
            message += "accepts here."
            fix = "Remove it, or check its spelling."
        elif kind == "Type":
            message += "."
            fix = "Write the value with the right JSON type (a number has no quotes)."
        elif kind == "AnyOf" and path and path[-1] == "content":
            message, fix = _content_problem(_value_at(item, path))
        elif kind in ("AnyOf", "OneOfNotValid") and (words := _type_words(error)):
            message = words
            fix = "Write the value with the right JSON type (a number has no quotes)."
        elif kind in ("Maximum", "Minimum", "ExclusiveMinimum", "ExclusiveMaximum"):
            limit = getattr(error.kind, "limit", None)
            bound = out_of_range_problem(line, where, error.instance, limit)
            if bound is not None:
                problems.append(bound)
                continue
            message += "."
            fix = "Use a value within the allowed range."
        elif kind == "Enum":
            message += "."
            fix = "Use one of the listed values."
        problems.append(Problem(line, where, clip(message, QUOTE_CHARS + 100), fix))
    return problems


def may_hold_nul(raw: bytes, item: object) -> bool:
    """Whether a request holds a NUL. JSON can only write one as an escape, so a line without a
    backslash (a one-byte search) cannot hold one; the walk runs only after `\\u0000` is seen."""
    return b"\\" in raw and b"\\u0000" in raw and holds_nul(item)


NUL_PROBLEM = (
    "The request contains a NUL character (\\u0000).",
    "Remove it; it is almost always left over from a binary file.",
)


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> NoReturn:
    raise _NotFinite(name)


@functools.lru_cache(maxsize=1)
def fast_validator() -> jsonschema_rs.Validator:
    """The published request schema with what batches refuse besides, written as schema and
    compiled once: stream not true, at least one message, max_tokens at least 1, no integer
    past bounds.MAX_INTEGER. One call checks all of it. (The workspace's models are a dictionary
    lookup: as schema, a condition per model would double the cost of every call.)"""
    rules = {
        "properties": {
            "params": {
                "properties": {
                    "stream": {"not": {"const": True}},
                    "messages": {"minItems": 1},
                    "max_tokens": {"minimum": 1},
                }
            }
        }
    }
    schema = {
        "allOf": [{"$ref": f"#/components/schemas/{SCHEMA}"}, rules],
        "components": bounded_components(openapi_document()["components"]),
    }
    return jsonschema_rs.validator_for(schema, validate_formats=False)


# A model the workspace does not have: no limit could match it.
UNKNOWN_MODEL = -1


# json's messages that read as cut off once the position is taken out of them.
JSON_WORDS = {
    "Unterminated string starting at": "a string starts here and is never closed",
    "Invalid control character at": "a control character (such as a tab or newline) inside a "
    "string; write it as \\t or \\n",
    "Invalid \\escape": "an unknown escape after a backslash",
}


class Rules:
    """The checks of one file: the workspace's models, and the custom_ids seen so far."""

    def __init__(self, models: list[dict] | None) -> None:
        self.models = {model["id"]: model.get("max_tokens") for model in models} if models else None
        # model id: its output limit (None: no limit known); a missing model gets UNKNOWN_MODEL.
        self.limits = self.models
        self.is_valid = fast_validator().is_valid
        self.first_line: dict[str, int] = {}

    def within_models(self, params: dict) -> bool:
        """The model is the workspace's, and max_tokens within its limit (or no list is known)."""
        if self.limits is None:
            return True
        limit = self.limits.get(params["model"], UNKNOWN_MODEL)
        return limit is None or (limit != UNKNOWN_MODEL and params["max_tokens"] <= limit)

    # The bounds, before anything else looks at the line
    def out_of_bounds(self, line: int, item: object) -> list[Problem] | None:
        """None when the line keeps the bounds that every later step relies on (see `bounds`);
        else its problems: the bound it breaks, and its custom_id's, which are safe to look at.
        Nothing else of such a line is looked at."""
        problem = depth_problem(line, item)
        if problem is None:
            return None
        return [*self._custom_id_problems(line, item), problem]

    # The fast path
    def check(self, line: int, item: object, raw: bytes) -> list[Problem] | None:
        """None when the request is valid (its custom_id is then taken); else its problems.
        `Check.run_jsonl` writes this out inline for speed: keep the two alike."""
        bounded = self.out_of_bounds(line, item)
        if bounded is not None:
            return bounded
        if type(item) is dict:
            try:
                valid = self.is_valid(item)
            except ValueError:  # the validator's own depth limit, which bounds.MAX_DEPTH is below
                valid = False
            if valid:
                custom_id = item["custom_id"]
                params = item["params"]
                if (
                    custom_id not in self.first_line
                    and integers_written_as_integers(params)
                    and self.within_models(params)
                    and not may_hold_nul(raw, item)
                    and not (may_break_rules(params) and rule_problems(params))
                ):
                    self.first_line[custom_id] = line
                    return None
        return self.problems(line, item, raw, bounds_kept=True)

    # The slow path: every problem on the line, worded
    def problems(
        self, line: int, item: object, raw: bytes, *, bounds_kept: bool = False
    ) -> list[Problem]:
        """Every problem of the line; `bounds_kept`: `out_of_bounds` found none already."""
        if not bounds_kept:
            bounded = self.out_of_bounds(line, item)
            if bounded is not None:
                return bounded
        if not isinstance(item, dict):
            return [
                Problem(
                    line,
                    "",
                    f"The line is a JSON {type(item).__name__}, not an object.",
                    'Each line must be one object: {"custom_id": "…", "params": {…}}.',
                )
            ]
        problems = self._custom_id_problems(line, item)
        problems.extend(schema_problems(line, item))
        params = item.get("params")
        if isinstance(params, dict):
            problems.extend(self._batch_rules(line, params))
        if may_hold_nul(raw, item):
            problems.append(Problem(line, "", *NUL_PROBLEM))
        if not problems:
            # Whatever the fast path refused is named above; this is a guard, never reached.
            problems.append(
                Problem(line, "", "The request was refused.", "Report this line to us.")
            )
        return problems

    def _custom_id_problems(self, line: int, item: object) -> list[Problem]:
        """A custom_id that is not one, or was used before; a good one is taken (so a later
        line using it again is told which line has it)."""
        problems: list[Problem] = []
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if isinstance(custom_id, str):
            if not is_custom_id(custom_id):
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
                        f"{self.first_line[custom_id]:,}.",
                        "Give every request its own custom_id.",
                    )
                )
            else:
                self.first_line[custom_id] = line
        return problems

    def _batch_rules(self, line: int, params: dict) -> list[Problem]:
        problems = [Problem(line, *problem) for problem in rule_problems(params)]
        problems.extend(integer_problems(line, params))
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
            if model not in self.models:
                close = sorted(name for name in self.models if name.startswith(model[:10]))[:3]
                problems.append(
                    Problem(
                        line,
                        "params.model",
                        f"Model {model[:100]!r} is not available in this workspace.",
                        "Use one of: " + ", ".join(close or sorted(self.models)[:4]) + ".",
                    )
                )
            else:
                limit = self.models[model]
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

    # Lines orjson refused
    def json_problem(self, line: int, raw: bytes, error: orjson.JSONDecodeError) -> Problem:
        """Why a line is not JSON the API can read, with where, in the user's terms."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Problem(
                line,
                "",
                f"Line {line:,} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
                f"{exc.start + 1:,}).",
                FIX_UTF8,
            )
        if str(error).startswith("depth limit"):
            # Deeper than orjson reads: the standard library would recurse as deep to say so.
            return unread_depth_problem(line, raw, f"more than {READER_DEPTH:,}")
        try:
            json.loads(text, parse_constant=_refuse_constant)
        except _NotFinite as exc:
            return Problem(
                line,
                "",
                f"The line holds {exc}, which is not a number JSON can carry.",
                FIX_NUMBER,
            )
        except RecursionError:  # deep, and with another fault orjson stopped at first
            return unread_depth_problem(line, raw, f"more than {MAX_DEPTH}")
        except json.JSONDecodeError as exc:
            # json's own words, whole: "Unterminated string starting at" ends at the column.
            what = JSON_WORDS.get(exc.msg, exc.msg)
            return Problem(
                line,
                f"column {exc.colno}",
                f"Not valid JSON at column {exc.colno}: {what}.",
                "Each line must be one complete JSON object; check quotes, commas and brackets "
                "near that column.",
            )
        except ValueError:
            # The standard library's own limit on the digits of an integer.
            return Problem(
                line,
                "",
                "The line holds a number with thousands of digits, more than JSON numbers carry.",
                FIX_NUMBER,
            )
        # The standard library read it, so the refusal is about a value orjson will not carry.
        reason = str(error)
        if "surrogate" in reason:
            return Problem(
                line,
                "",
                "The request contains half of a surrogate pair (a \\ud800-\\udfff escape without "
                "its other half), which is not a character.",
                "Write the character itself, or both halves of its \\u escape.",
            )
        if "depth" in reason or "recursion" in reason:
            return Problem(line, "", "The line is nested too deeply to read.", FIX_NESTING)
        if "infinity" in reason or "number" in reason:
            return Problem(
                line,
                "",
                "The line holds a number too large to be a JSON number (it would be infinite).",
                FIX_NUMBER,
            )
        return Problem(
            line,
            "",
            f"The line is not JSON the API can read ({reason.split(':')[0]}).",
            "Each line must be one complete JSON object.",
        )
