"""The bounds a line must keep before anything walks it or computes with it.

Everything after the parse is code that recurses or does arithmetic on what the file says: the
compiled schema validator (jsonschema-rs), the search for NUL characters, the rules the schema
states in words, the estimate (orjson encodes tool definitions there), the preview, Python's own
repr in a problem's wording. Each has a limit of its own that a line could reach, and reaching
it raised in the middle of the check (orjson encodes at most 254 levels, Python recurses about
1,000 deep, Decimal will not multiply a float). So a line is held to these bounds first, and a
line that breaks one is a problem of its own line, worded here, and goes no further:

- nesting: at most MAX_DEPTH levels of lists and objects (`depth_problem`), measured before the
  schema validator or anything else sees the line, without recursion; a line that breaks it gets
  that problem and no other (but its custom_id's);
- numbers: every value the schema types as an integer within MIN_INTEGER and MAX_INTEGER
  (written into the compiled schema, `bounded_components`, so the one call that checks the
  schema checks it too: a number is no danger to the validator, only to what computes with it
  after), and the two integers this check computes with, max_tokens and thinking.budget_tokens,
  written as integers (`integer_problems`); nothing computes with a number before both hold;
- strings: no NUL (rules.NUL_PROBLEM; a problem quoting one writes it as an escape,
  problems.without_nul), no half of a surrogate pair (orjson refuses it when reading), no longer
  than a line (reading.Lines), and quoted in a problem at most a few hundred characters.

The usual request (one message of text) cannot break any of them; `Check.run_jsonl` tells it by
its shape, with no walk, so a clean file pays nothing here.
"""

import copy
import json
import re
from collections.abc import Sequence
from gc import get_referents
from typing import Any

from batches.intake.problems import FIX_NESTING, Problem

# How deep lists and objects may nest in one request. A request the API takes nests about 6
# levels (params, messages, a message, its content, a block, its source); a tool's input schema
# or a tool call's input adds its own, and real ones stay within a dozen or two. 64 leaves room
# for any of them and keeps every walk far below the limits that fail: orjson encodes at most
# 254 levels, and Python recurses about 1,000 deep.
MAX_DEPTH = 64
# orjson reads at most this many levels; it refuses a deeper line before anything else sees it.
READER_DEPTH = 1024
# The largest integer the API takes where its schema says integer: a signed 64-bit integer's,
# the widest any field of the API stores (no model's max_tokens comes near it). A bigger one is a
# mistake, and past 2**64 orjson reads it as a float, which Decimal will not multiply.
MAX_INTEGER = 2**63 - 1
MIN_INTEGER = -(2**63)
# How much of a path a problem names (a line nested 900 deep has a path 900 steps long).
PATH_STEPS = 8
# The integers this check does arithmetic with: the estimate adds max_tokens, the thinking rule
# compares the budget with it.
COMPUTED_INTEGERS = (("max_tokens",), ("thinking", "budget_tokens"))
FIX_WHOLE_NUMBER = "Write it as a whole number, without a decimal point or exponent: {whole}."
FIX_SMALLER = (
    "Use a much smaller number: max_tokens counts output tokens, a few thousand as a rule."
)


def short_path(path: Sequence[str | int]) -> str:
    """A path as a field name (`params.tools[0].input_schema`), its first PATH_STEPS steps."""
    text = ""
    for part in path[:PATH_STEPS]:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            part = part if len(part) <= 64 else part[:64] + "…"
            text += f".{part}" if text else part
    return text + ("…" if len(path) > PATH_STEPS else "")


def deeper_than(value: object, levels: int) -> bool:
    """Whether `value` nests lists and objects more than `levels` deep, a level at a time and
    with no recursion: `gc.get_referents` gives everything the objects of one level hold (the
    next level) in one call in C, and a string or a number holds nothing, so a request is
    looked at in as many calls as it is deep, not one Python step per value. (A dict's and a
    list's traversal visits every value that could hold another object: every list and dict.)"""
    level = [value]
    for _ in range(levels):
        if not level:
            return False
        level = get_referents(*level)
    return any(type(each) is dict or type(each) is list for each in level)


def depth(value: object) -> int:
    """How many levels of lists and objects `value` nests (a scalar: 0), as `deeper_than`."""
    level, deepest = [value], 0
    while any(type(each) is dict or type(each) is list for each in level):
        deepest += 1
        level = get_referents(*level)
    return deepest


def path_to_level(value: object, level: int) -> list[str | int]:
    """The keys and indices that lead to the first list or object `level` levels down (or to
    the deepest one, if none is that deep), without recursion."""
    stack: list[tuple[Any, int, list]] = [(value, 1, [])]
    best: list[str | int] = []
    best_level = 0
    while stack:
        node, here, path = stack.pop()
        if here > best_level:
            best, best_level = path, here
            if here >= level:
                break
        items = node.items() if type(node) is dict else enumerate(node)
        children = [
            (child, here + 1, [*path, key])
            for key, child in items
            if type(child) is dict or type(child) is list
        ]
        stack.extend(reversed(children))  # the first child is looked at first
    return best


def nesting_problem(line: int, levels: str, path: Sequence[str | int]) -> Problem:
    where = short_path(path) or "The request"
    return Problem(
        line,
        short_path(path),
        f"{where} is nested too deeply: {levels} levels of lists and objects, at most {MAX_DEPTH}.",
        FIX_NESTING,
    )


def depth_problem(line: int, item: object) -> Problem | None:
    """The problem of a line nested deeper than MAX_DEPTH, or None."""
    if not deeper_than(item, MAX_DEPTH):
        return None
    return nesting_problem(line, f"{depth(item):,}", path_to_level(item, MAX_DEPTH + 1))


# A JSON string, a bracket or a comma: enough to follow the path into a line orjson refused for
# its depth (whatever comes before the place it gave up is JSON it had read).
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"\s*(:)?|[\[\]{},]')


def unread_depth_problem(line: int, raw: bytes, levels: str) -> Problem:
    """The problem of a line too deep to read (`levels` says how deep is known): where it goes
    past MAX_DEPTH, found by following its tokens up to that point (not further: the rest may be
    megabytes)."""
    frames: list[list] = []  # [key or index] of each open list or object
    for token in _TOKEN.finditer(raw):
        text = token.group()
        first = text[:1]
        if first in (b"{", b"["):
            frames.append([None if first == b"{" else 0])
            if len(frames) > MAX_DEPTH:
                break
        elif first in (b"}", b"]"):
            if frames:
                frames.pop()
        elif first == b",":
            if frames and isinstance(frames[-1][0], int):
                frames[-1][0] += 1
        elif token.group(1) and frames:  # a key
            try:
                frames[-1][0] = json.loads(text[: text.rindex(b'"') + 1])
            except ValueError:
                frames[-1][0] = "?"
    path = [frame[0] for frame in frames[:-1] if frame[0] is not None]
    return nesting_problem(line, levels, path)


def integer_problems(line: int, params: dict) -> list[Problem]:
    """max_tokens and thinking.budget_tokens written as numbers that are not JSON integers
    (100.0, 1e5): the schema takes a whole number in any form, but the estimate and the thinking
    rule compute with integers, so these must be written as one. (A fraction is the schema's
    problem, and a number beyond MAX_INTEGER the bounded schema's.)"""
    problems = []
    for path in COMPUTED_INTEGERS:
        value: object = params
        for step in path:
            value = value.get(step) if type(value) is dict else None
        if type(value) is float and value.is_integer() and MIN_INTEGER <= value <= MAX_INTEGER:
            field = "params." + ".".join(path)
            problems.append(
                Problem(
                    line,
                    field,
                    f"{'.'.join(path)} is {value!r}, a number with a decimal point or exponent.",
                    FIX_WHOLE_NUMBER.format(whole=int(value)),
                )
            )
    return problems


def integers_written_as_integers(params: dict) -> bool:
    """Whether max_tokens and a thinking budget (when there is one) are JSON integers: the fast
    path's test for what `integer_problems` words."""
    if type(params.get("max_tokens")) is not int:
        return False
    thinking = params.get("thinking")
    return type(thinking) is not dict or type(thinking.get("budget_tokens", 0)) is int


def out_of_range_problem(line: int, field: str, value: object, limit: object) -> Problem | None:
    """A schema error about a number past MAX_INTEGER (or MIN_INTEGER), in the words of this
    module; None for any other bound, which the schema's own words state."""
    if limit == MAX_INTEGER:
        what = f"more than the largest integer the API takes ({MAX_INTEGER:,})"
    elif limit == MIN_INTEGER:
        what = f"less than the smallest integer the API takes ({MIN_INTEGER:,})"
    else:
        return None
    shown = repr(value) if isinstance(value, float) else f"{value:,}"
    return Problem(
        line,
        field,
        f"{field.removeprefix('params.')} is {shown}, {what}.",
        FIX_SMALLER if field == "params.max_tokens" else "Use a smaller number.",
    )


def bounded_components(components: dict) -> dict:
    """The schema's components with every integer bounded by MIN_INTEGER and MAX_INTEGER (where
    the schema sets no tighter bound), so that one call of the compiled validator also refuses
    a number no field of the API takes; the original is left as it was."""
    bounded = copy.deepcopy(components)
    stack: list = [bounded]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
                if "maximum" not in node and "exclusiveMaximum" not in node:
                    node["maximum"] = MAX_INTEGER
                if "minimum" not in node and "exclusiveMinimum" not in node:
                    node["minimum"] = MIN_INTEGER
            stack.extend(value for key, value in node.items() if key not in ("enum", "const"))
        elif isinstance(node, list):
            stack.extend(node)
    return bounded
