"""Lines to fuzz the file check with, each knowing what the check must say of it, and the judge
that holds a check's findings to that. Used by bench/fuzz_intake.py (a million lines and more)
and tests/test_intake_fuzz.py (a few hundred, with Hypothesis).

A case is one line of a JSONL file: a valid request of some shape (one message of text, or a
conversation with content blocks, a system prompt, tools, tool calls, thinking, sampling
settings...), either left valid or changed in one way (its `kind`):

- deep: any value of the request, scalar or not, replaced by lists and objects nested 1 to
  5,000 levels deep, ending in a number, a string, a NUL, null or an empty list or object;
- number: huge integers (2**63, 2**64-1, 10**23, -10**25) where the API takes an integer, whole
  numbers written as 100.0, fractions, 1e300 where a number lies between 0 and 1, numbers too
  big for JSON (1e400, 400 or 5,000 digits), NaN and Infinity; and huge numbers where any
  number will do (a tool's input), which are fine;
- nul: a NUL in a string or a key anywhere, escaped or as a raw byte;
- surrogate: half of a surrogate pair as an escape (in a string or a key), a surrogate or
  another byte that is not UTF-8;
- unicode: odd but valid characters in free text (marks, joiners, noncharacters, the byte order
  mark, line separators, astral ones), which are fine;
- type: a value of the wrong JSON type where the schema says which;
- big: strings of hundreds of kilobytes where any length will do (fine) and where it will not;
- shape: a field required and removed, one unknown and added, no messages, a line that is not
  an object or is cut short, a custom_id used twice or malformed, stream, the rules the schema
  states in words, an unknown model or a max_tokens above the model's limit;
- damage: a few bytes flipped, added or removed (whether the line stays valid is not known);
- mixed: two or three of the changes above on one line (whether it stays valid is not known:
  one change may undo another);
- blank: an empty line or one of spaces, which is no request and no problem.

A CSV file (`Maker.csv_file`) has rows whose prompt cell holds text, odd characters, quotes,
commas and line breaks (fine), nothing (an empty prompt), a NUL, or whose id is malformed or
used before, or which have a cell too many.

`found` reads what a check found (every problem of its full report, and every request it kept)
and `judge` compares it with what each case says. Its figures:

- crashes: a line whose problem is the check's last defence ("could not be checked", or "could
  not be read to the end"), a line that got neither a problem nor acceptance (checking stopped
  early), or a problem holding a NUL (PostgreSQL would refuse to store the report) -
  bench/fuzz_intake.py adds exceptions that escape the check;
- masked: a line the case knows to be invalid that was accepted; or an invalid line none of
  whose problems says what is wrong with it (each kind states the words one of the problems
  must hold and, where a field was changed, that the problem must name that field, an object
  holding it or a field inside it - for a `type` or `role`, any field of its object; a generic
  "The request was refused." never does); or a problem with no line number while every line
  has one;
- false alarms: a line the case knows to be valid that was refused.
"""

import contextlib
import csv
import io
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from batches.intake.bounds import MAX_DEPTH
from batches.intake.checking import Merged
from batches.intake.templating import CsvOptions
from batches.spreadsheets import safe_cell

VALID, INVALID, UNKNOWN, BLANK = "valid", "invalid", "unknown", "blank"
KINDS = (
    "valid",
    "deep",
    "number",
    "nul",
    "surrogate",
    "unicode",
    "type",
    "big",
    "shape",
    "damage",
    "mixed",
    "blank",
)
# How often each kind comes, in bench/fuzz_intake.py: most lines of a real file are valid.
WEIGHTS = (30, 14, 10, 6, 5, 6, 10, 2, 12, 4, 5, 1)
# The kinds that change a request in place, and can go first on a mixed line.
IN_PLACE = ("type", "nul", "unicode", "big", "shape")
ODD_KEYS = ("colour", "a'b", 'q"q', "", " ", "=x", "é", "\u2028", "max-tokens", "k" * 100)
# What the check says when its last defence caught a line: a crash, for the figures.
CRASH_WORDS = ("could not be checked", "could not be read to the end")
HOLE = "@@hole@@"
HOLE_BYTES = orjson.dumps(HOLE)
MODEL_NAMES = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4-6")
WORDS = ("alpha", "beta", "gamma", "delta", "summarise", "the", "passage", "one", "sentence")
ODD = (
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "e\u0301",  # a combining accent
    "\u200d",  # zero-width joiner
    "\ufeff",  # the byte order mark, inside text
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\ufffe",  # noncharacters
    "\uffff",
    "\ue000",  # private use
    "\U0001f600",  # astral: a surrogate pair when escaped
    "\U0001d518",
    "\U0010fffd",
    "中文",
    "\t",
    "\n",
    "\r",
    "\\",
    '"',
    "{",
    "]",
    "\x7f",
    "\x1f",
)
ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


@dataclass(frozen=True, slots=True)
class Case:
    raw: bytes
    kind: str
    verdict: str  # VALID, INVALID, UNKNOWN or BLANK
    words: tuple[str, ...] = ()  # one of the line's problems holds one of these...
    field: str | None = None  # ...and names this field, an object holding it or one inside it
    custom_id: str | None = None  # the line's custom_id, when it is valid and unique


def path_name(path: Iterable) -> str:
    """A path as the check names a field: `params.messages[0].content`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def depth(value: object) -> int:
    """Levels of lists and objects (the judge's own count, not the check's)."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path in a (shallow) request, its own included."""
    found = [prefix]
    stack = [(value, prefix)]
    while stack:
        node, here = stack.pop()
        if isinstance(node, dict):
            items: Iterable = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, child in items:
            found.append((*here, key))
            stack.append((child, (*here, key)))
    return found


def get(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def put(value: Any, path: tuple, new: object) -> None:
    get(value, path[:-1])[path[-1]] = new


# What the schema lets a place in a request hold: "free" (anything), "free-object" (an object
# holding anything), or the JSON types it takes.
def slot(path: tuple) -> str | frozenset:
    if "input_schema" in path:
        at = path.index("input_schema")
        rest = path[at + 1 :]
        if not rest:
            return frozenset({"object"})
        if rest[0] == "properties":
            return "free-object-or-null" if len(rest) == 1 else "free"
        if rest[0] == "type":
            return frozenset({"const"})
        if rest[0] == "required":
            return frozenset({"array", "null"}) if len(rest) == 1 else frozenset({"string"})
        return "free"
    if "input" in path:  # a tool call's input, (params, messages, 0, content, 1, input, ...)
        return "free-object" if path[-1] == "input" else "free"
    last = path[-1] if path else None
    if last in ("max_tokens", "top_k", "budget_tokens"):
        return frozenset({"integer"})
    if last == "max_uses":
        return frozenset({"integer", "null"})
    if last in ("allowed_domains", "blocked_domains"):
        return frozenset({"array", "null"})
    if last in ("temperature", "top_p"):
        return frozenset({"number"})
    if last == "user_id":
        return frozenset({"string", "null"})
    if last == "system" or (last == "content" and len(path) == 4):
        return frozenset({"string", "array"})
    if last == "content" and len(path) == 6:  # a tool result's
        return frozenset({"string", "array"})
    if isinstance(last, int) and path[-2] in ("messages", "tools", "system", "content"):
        return frozenset({"object"})
    if isinstance(last, int):
        return frozenset({"string"})  # stop_sequences, required
    if last in ("messages", "tools", "stop_sequences"):
        return frozenset({"array"})
    if last in ("params", "metadata", "tool_choice", "thinking", "source", None):
        return frozenset({"object"})
    return frozenset({"string"})


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def allowed(where: str | frozenset, value: object) -> bool:
    """Whether the schema lets `value` (any JSON) stand where `slot` said."""
    if where == "free":
        return True
    if where == "free-object":
        return isinstance(value, dict)
    if where == "free-object-or-null":
        return value is None or isinstance(value, dict)
    kind = json_type(value)
    assert isinstance(where, frozenset)
    return kind in where or (kind == "integer" and "number" in where)


@dataclass
class Maker:
    """Makes the cases of one file, custom_ids unique within it. `models`: the workspace's
    model list the file is checked against (None: none). `big`: how long a big string is."""

    rng: random.Random
    models: list[dict] | None = None
    big: int = 300_000
    number: int = 0
    used_ids: list[str] = field(default_factory=list)

    # Text and values
    def words(self, low: int = 1, high: int = 12) -> str:
        rng = self.rng
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    def odd_text(self) -> str:
        rng = self.rng
        pieces = [self.words(1, 4)]
        for _ in range(rng.randint(1, 4)):
            pieces.insert(rng.randint(0, len(pieces)), rng.choice(ODD))
        return "".join(pieces)

    def free_value(self, levels: int = 3) -> object:
        """Any JSON value, a few levels deep (what a tool's input may hold)."""
        rng = self.rng
        choice = rng.randrange(9 if levels > 0 else 6)
        if choice == 0:
            return rng.randint(-(2**63), 2**64 - 1)
        if choice == 1:
            return rng.choice((0.5, -1e300, 1e300, 5e-324, 2.0**70, 1e23, -0.0))
        if choice in (2, 3):
            return self.odd_text() if rng.random() < 0.3 else self.words()
        if choice == 4:
            return rng.choice((True, False))
        if choice == 5:
            return None
        if choice in (6, 7):
            return {
                (self.odd_text() if rng.random() < 0.2 else f"k{n}"): self.free_value(levels - 1)
                for n in range(rng.randint(0, 4))
            }
        return [self.free_value(levels - 1) for _ in range(rng.randint(0, 4))]

    def custom_id(self) -> str:
        self.number += 1
        tail = "".join(self.rng.choice(ID_CHARS) for _ in range(self.rng.randint(0, 20)))
        return f"c{self.number}-{tail}"[:64]

    # A valid request
    def request(self, custom_id: str) -> dict:
        rng = self.rng
        model = rng.choice([spec["id"] for spec in self.models] if self.models else MODEL_NAMES)
        shape = rng.random()
        params: dict = {"model": model, "max_tokens": rng.randint(1, 4096)}
        if shape < 0.4:  # the usual request
            params["messages"] = [{"role": "user", "content": self.words()}]
            return {"custom_id": custom_id, "params": params}
        turns = rng.randint(1, 4)
        tool_names = [f"tool_{n}" for n in range(rng.randint(0, 3))] if rng.random() < 0.5 else []
        messages = []
        for turn in range(turns):
            role = "user" if turn % 2 == 0 else "assistant"
            messages.append({"role": role, "content": self.content(role, tool_names)})
        params["messages"] = messages
        if rng.random() < 0.3:
            params["system"] = (
                self.words()
                if rng.random() < 0.5
                else [{"type": "text", "text": self.words()} for _ in range(rng.randint(1, 2))]
            )
        if tool_names:
            params["tools"] = [self.tool(name) for name in tool_names]
            if rng.random() < 0.3:
                params["tools"].append(self.search_tool())
            if rng.random() < 0.5:
                params["tool_choice"] = rng.choice(
                    [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": tool_names[0]}]
                )
        if rng.random() < 0.2:
            params["metadata"] = {"user_id": self.words(1, 3)}
        if rng.random() < 0.2:
            params["temperature"] = rng.choice((0, 1, 0.25, 0.7))
        if rng.random() < 0.1:
            params["top_p"] = 0.9
        if rng.random() < 0.1:
            params["top_k"] = rng.randint(0, 500)
        if rng.random() < 0.15:
            params["stop_sequences"] = [self.words(1, 2) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.15:
            params["max_tokens"] = rng.randint(2048, 4096)
            params["thinking"] = {
                "type": "enabled",
                "budget_tokens": rng.randint(1024, params["max_tokens"] - 1),
            }
        return {"custom_id": custom_id, "params": params}

    def content(self, role: str, tool_names: list[str]) -> str | list[dict]:
        rng = self.rng
        if rng.random() < 0.5:
            return self.words()
        blocks: list[dict] = [{"type": "text", "text": self.words()}]
        extra = rng.random()
        if role == "user" and extra < 0.3:
            blocks.append(
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                }
            )
        elif role == "user" and extra < 0.5:
            blocks.append(
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": self.words()},
                }
            )
        elif role == "assistant" and tool_names and extra < 0.6:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{rng.randint(0, 10**6)}",
                    "name": rng.choice(tool_names),
                    "input": {f"k{n}": self.free_value() for n in range(rng.randint(0, 4))},
                }
            )
        elif role == "user" and extra < 0.7:
            blocks.append(
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": self.words()}
            )
        rng.shuffle(blocks)
        return blocks

    def tool(self, name: str) -> dict:
        rng = self.rng
        properties: dict[str, object] = {
            f"p{n}": {"type": "string", "description": self.words(1, 5)}
            for n in range(rng.randint(0, 30))  # up to 60 brackets: shallow, but many
        }
        if rng.random() < 0.3:
            properties["nested"] = self.free_value(4)
        return {
            "name": name,
            "description": self.words(),
            "input_schema": {"type": "object", "properties": properties},
        }

    def search_tool(self) -> dict:
        rng = self.rng
        tool: dict = {"type": "web_search_20250305", "name": "web_search"}
        if rng.random() < 0.5:
            tool["max_uses"] = rng.randint(1, 10)
        if rng.random() < 0.5:
            tool[rng.choice(("allowed_domains", "blocked_domains"))] = ["example.org"]
        return tool

    # Cases
    def case(self, kind: str) -> Case:
        custom_id = self.custom_id()
        item = self.request(custom_id)
        made = getattr(self, f"_{kind}")(item, custom_id)
        if made.verdict == VALID and made.custom_id:
            self.used_ids.append(made.custom_id)
        return made

    def file(self, kinds: Iterable[str]) -> list[Case]:
        return [self.case(kind) for kind in kinds]

    def csv_file(self, rows: int) -> tuple[bytes, list[tuple[int, Case]], CsvOptions]:
        """A CSV upload of `rows` rows, each row's case with the line it ends on (a cell with
        line breaks spans several), and the options it is checked with."""
        rng = self.rng
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "text"])
        line = 1
        numbered = []
        seen: list[str] = []
        for _ in range(rows):
            self.number += 1
            custom_id = f"r{self.number}"
            text = self.words()
            choice = rng.randrange(12)
            verdict, field_name = VALID, None
            words: tuple[str, ...] = ()
            extra: list[str] = []
            if choice == 0:
                text = self.odd_text().replace("\r", "")  # a \r before a line break is dropped
            elif choice == 1:
                text = 'say "hi", then\n go on, {not a placeholder}'
            elif choice == 2:
                text = rng.choice(("", "   "))
                verdict, words = INVALID, ("empty prompt",)
            elif choice == 3:
                text += "\x00"
                verdict, words = INVALID, ("NUL",)
            elif choice == 4:
                custom_id = rng.choice(("a b", "x" * 65, "é"))
                verdict, words, field_name = INVALID, ("custom_id",), "custom_id"
            elif choice == 5 and seen:
                custom_id = rng.choice(seen)
                verdict, words = INVALID, ("already used on line",)
            elif choice == 6:
                extra = ["more"]
                verdict, words = INVALID, ("but the header has",)
            elif choice == 7:
                text = "y" * rng.randint(1000, min(self.big, 100_000))  # under the csv cell cap
            cells = [custom_id, text, *extra]
            before = out.tell()
            writer.writerow(cells)
            written = out.getvalue()[before:]
            line += written.count("\n")
            if verdict == VALID and custom_id not in seen:
                seen.append(custom_id)
            numbered.append((line, Case(written.encode(), "csv", verdict, words, field_name)))
        model = self.models[0]["id"] if self.models else "claude-haiku-4-5"
        options = CsvOptions(template="{text}", model=model, max_tokens=16, id_column="id")
        return out.getvalue().encode("utf-8"), numbered, options

    def _valid(self, item: dict, custom_id: str) -> Case:
        return Case(orjson.dumps(item), "valid", VALID, custom_id=custom_id)

    def _holed(self, item: dict, path: tuple, replacement: bytes) -> bytes:
        put(item, path, HOLE)
        raw = orjson.dumps(item)
        assert raw.count(HOLE_BYTES) == 1
        return raw.replace(HOLE_BYTES, replacement)

    def _blank(self, item: dict, custom_id: str) -> Case:
        return Case(self.rng.choice((b"", b"   ", b"\t", b" \t ")), "blank", BLANK)

    def _deep(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        path = rng.choice(paths(item)[1:])
        base = len(path)
        room = MAX_DEPTH - base
        levels = rng.choice(
            (
                rng.randint(1, max(1, room - 1)),
                room,
                room + 1,
                rng.randint(room + 1, 300),
                rng.randint(900, 1100),
                rng.randint(1100, 5000),
            )
        )
        levels = max(1, levels)
        leaf_kind = rng.randrange(6)
        leaf: object = (1, "x", "a\x00b", None, [], {})[leaf_kind]
        style = rng.randrange(3)  # lists, objects, or both by turns
        opening, closing = [], []
        for level in range(levels):
            as_list = style == 0 or (style == 2 and level % 2 == 0)
            opening.append(b"[" if as_list else b'{"a":')
            closing.append(b"]" if as_list else b"}")
        replacement = b"".join(opening) + orjson.dumps(leaf) + b"".join(reversed(closing))
        raw = self._holed(item, path, replacement)
        total = max(depth(item), base + levels + (1 if leaf_kind >= 4 else 0))
        name = path_name(path)
        if total > MAX_DEPTH:
            return Case(raw, "deep", INVALID, ("nested too deeply",), name)
        outer: object = [] if style != 1 else {}
        if leaf_kind == 2:
            return Case(raw, "deep", INVALID, ("NUL",))
        if isinstance(slot(path), str) and allowed(slot(path), outer):
            valid_id = custom_id if path != ("custom_id",) else None
            return Case(raw, "deep", VALID, custom_id=valid_id)
        return Case(raw, "deep", INVALID, (), name)

    def _number(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        params = item["params"]
        where = rng.randrange(8)
        if where == 0:  # any number will do: a tool's input
            params.pop("tool_choice", None)
            params["tools"] = [self.tool("t")]
            params["tools"][0]["input_schema"]["properties"]["n"] = HOLE
            text = rng.choice((b"1e300", b"-1e300", b"18446744073709551615", b"9" * 30, b"5e-324"))
            raw = orjson.dumps(item).replace(HOLE_BYTES, text)
            return Case(raw, "number", VALID, custom_id=custom_id)
        path: tuple
        words: tuple[str, ...]
        if where == 1:  # not a JSON number at all, anywhere
            path = rng.choice(paths(item)[1:])
            text, word = rng.choice(
                (
                    (b"1e400", "too large"),
                    (b"-1e400", "too large"),
                    (b"9" * 400, "too large"),
                    (b"9" * 5000, "thousands of digits"),
                    (b"NaN", "not a number JSON can carry"),
                    (b"Infinity", "not a number JSON can carry"),
                    (b"-Infinity", "not a number JSON can carry"),
                )
            )
            return Case(self._holed(item, path, text), "number", INVALID, (word,))
        if where in (2, 3, 4):
            name = rng.choice(("max_tokens", "top_k", "budget_tokens", "max_uses"))
            if name == "max_uses":
                params.pop("tool_choice", None)
                params["tools"] = [{"type": "web_search_20250305", "name": "web_search"}]
                params["tools"][0]["max_uses"] = 1
                path = ("params", "tools", 0, "max_uses")
            elif name == "budget_tokens":
                params["max_tokens"] = 4096
                params["thinking"] = {"type": "enabled", "budget_tokens": 2048}
                path = ("params", "thinking", "budget_tokens")
            else:
                path = ("params", name)
                params[name] = 1
            choice = rng.randrange(5)
            if choice == 0:
                text = rng.choice(
                    (b"9223372036854775808", b"18446744073709551615", b"1" + b"0" * 23)
                )
                words = ("largest integer the API takes",)
            elif choice == 1:
                text, words = rng.choice((b"-1" + b"0" * 25, b"-9223372036854775809")), ("minimum",)
            elif choice == 2:
                text = rng.choice((b"2048.0", b"2.048e3", b"3000.0"))
                if name in ("top_k", "max_uses"):  # the schema takes a whole number in any form
                    raw = self._holed(item, path, text)
                    return Case(raw, "number", VALID, custom_id=custom_id)
                words = ("decimal point",)
            elif choice == 3:
                text, words = b"2048.5", ("is not of type",)
            else:
                text, words = b"true", ("is not of type",)
            raw = self._holed(item, path, text)
            return Case(raw, "number", INVALID, words, path_name(path))
        name = rng.choice(("temperature", "top_p"))
        text, words = rng.choice(
            ((b"1e300", ("maximum",)), (b"-1e300", ("minimum",)), (b"1.0000001", ("maximum",)))
        )
        params[name] = 0.5
        raw = self._holed(item, ("params", name), text)
        return Case(raw, "number", INVALID, words, f"params.{name}")

    def _strings(self, item: dict) -> list[tuple]:
        return [path for path in paths(item) if isinstance(get(item, path), str)]

    def _objects(self, item: dict) -> list[tuple]:
        return [path for path in paths(item) if isinstance(get(item, path), dict)]

    def _nul(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        choice = rng.randrange(5)
        if choice == 4:  # in a key of any object
            get(item, rng.choice(self._objects(item)))[rng.choice(("\x00", "a\x00"))] = 1
            return Case(orjson.dumps(item), "nul", INVALID, ("NUL",))
        if choice == 0:  # a raw NUL byte inside a string: not JSON
            raw = orjson.dumps(item).replace(b'"role":"', b'"role":"\x00', 1)
            return Case(raw, "nul", INVALID, ("control character",))
        if choice == 1:  # in a key, where any key will do
            params = item["params"]
            params.pop("tool_choice", None)
            params["tools"] = [self.tool("t")]
            params["tools"][0]["input_schema"]["properties"]["a\x00b"] = {"type": "string"}
            return Case(orjson.dumps(item), "nul", INVALID, ("NUL",))
        path = rng.choice(self._strings(item))
        value = get(item, path)
        at = rng.randint(0, len(value))
        put(item, path, value[:at] + "\x00" + value[at:])
        return Case(orjson.dumps(item), "nul", INVALID, ("NUL",))

    def _surrogate(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        marker = "@@s@@"
        if rng.random() < 0.2:  # in a key
            get(item, rng.choice(self._objects(item)))["k" + marker] = 1
        else:
            path = rng.choice(self._strings(item))
            put(item, path, get(item, path) + marker)
        raw = orjson.dumps(item)
        choice = rng.randrange(5)
        if choice < 3:
            half = rng.choice((b"\\ud800", b"\\udfff", b"\\ud83d x", b"\\ude00\\ud83d"))
            return Case(raw.replace(b"@@s@@", half), "surrogate", INVALID, ("surrogate",))
        bad = rng.choice((b"\xed\xa0\x80", b"\xff", b"\xc3", b"\xe2\x82", b"\x80"))
        return Case(raw.replace(b"@@s@@", bad), "surrogate", INVALID, ("UTF-8",))

    def _free_text(self, item: dict) -> list[tuple]:
        """Paths of strings that any text may be: a prompt, a system prompt, a description."""
        found = [
            path
            for path in self._strings(item)
            if path[-1] in ("text", "description", "content")
            or path == ("params", "system")
            or path[1:2] == ("stop_sequences",)
            or slot(path) == "free"
        ]
        # A document's text (an image's data is base64).
        found.extend(
            (*path, "data")
            for path in paths(item)
            if path[-1:] == ("source",) and get(item, path).get("type") == "text"
        )
        return found

    def _unicode(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        places = self._free_text(item)
        if not places:
            item["params"]["system"] = self.odd_text()
            return Case(orjson.dumps(item), "unicode", VALID, custom_id=custom_id)
        path = rng.choice(places)
        put(item, path, get(item, path) + self.odd_text())
        if rng.random() < 0.3:  # written as escapes
            raw = orjson.dumps(item).replace("\U0001f600".encode(), b"\\ud83d\\ude00")
        else:
            raw = orjson.dumps(item)
        return Case(raw, "unicode", VALID, custom_id=custom_id)

    def _type(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        typed = [path for path in paths(item)[1:] if isinstance(slot(path), frozenset)]
        typed = [path for path in typed if "const" not in slot(path)]
        path = rng.choice(typed)
        where = slot(path)
        candidates = [3, 3.5, "text", True, None, [1], {"a": 1}, [], {}]
        wrong = [value for value in candidates if not allowed(where, value)]
        value = rng.choice(wrong)
        put(item, path, value)
        # A `type` or `role` tells which kind of object this is: with another, any field of the
        # object may be the one named (a tool whose type is null is a custom tool, which lacks
        # an input_schema).
        named = path[:-1] if path[-1] in ("type", "role") else path
        return Case(orjson.dumps(item), "type", INVALID, (), path_name(named))

    def _big(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        size = rng.randint(self.big // 3, self.big)
        choice = rng.randrange(5)
        if choice == 0:
            item["params"]["messages"][0]["content"] = "x" * size
            return Case(orjson.dumps(item), "big", VALID, custom_id=custom_id)
        if choice == 1:
            item["custom_id"] = "c" * size
            return Case(orjson.dumps(item), "big", INVALID, ("custom_id",), "custom_id")
        if choice == 2:
            item["params"]["k" * size] = 1
            return Case(
                orjson.dumps(item), "big", INVALID, ("not a field the API accepts",), "params.k"
            )
        if choice == 3:
            item["params"]["metadata"] = {"user_id": "u" * rng.randint(513, 5000)}
            return Case(orjson.dumps(item), "big", INVALID, (), "params.metadata.user_id")
        item["params"].pop("tool_choice", None)
        item["params"]["tools"] = [self.tool("t")]
        item["params"]["tools"][0]["input_schema"]["properties"] = {
            f"p{n}": {"type": "string", "enum": [self.words(1, 2)]} for n in range(size // 100)
        }
        return Case(orjson.dumps(item), "big", VALID, custom_id=custom_id)

    def _shape(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        params = item["params"]
        choice = rng.randrange(16)
        if choice == 0:
            path = rng.choice(
                (
                    ("custom_id",),
                    ("params",),
                    ("params", "model"),
                    ("params", "max_tokens"),
                    ("params", "messages"),
                    ("params", "messages", 0, "role"),
                    ("params", "messages", 0, "content"),
                )
            )
            del get(item, path[:-1])[path[-1]]
            return Case(orjson.dumps(item), "shape", INVALID, ("is required",), path_name(path))
        if choice == 1:
            place = rng.choice(((), ("params",), ("params", "messages", 0)))
            key = rng.choice(ODD_KEYS)
            get(item, place)[key] = "blue"
            name = path_name((*place, key[:60]))
            return Case(
                orjson.dumps(item), "shape", INVALID, ("not a field the API accepts",), name
            )
        if choice == 2:
            params["messages"] = []
            return Case(orjson.dumps(item), "shape", INVALID, ("messages is empty",))
        if choice == 3:
            raw = rng.choice((b"[1, 2]", b'"text"', b"42", b"null", b"true", b"[]"))
            return Case(raw, "shape", INVALID, ("not an object",))
        if choice == 4:
            raw = orjson.dumps(item)
            cut = raw[: rng.randint(1, len(raw) - 1)]
            return Case(cut, "shape", INVALID, ("Not valid JSON", "not UTF-8"))
        if choice == 5 and self.used_ids:
            item["custom_id"] = rng.choice(self.used_ids)
            return Case(orjson.dumps(item), "shape", INVALID, ("already used on line",))
        if choice == 6:
            item["custom_id"] = rng.choice(("a b", "", "x" * 65, "é", "a\n", "../x"))
            return Case(orjson.dumps(item), "shape", INVALID, ("custom_id",), "custom_id")
        if choice == 7:
            params["stream"] = True
            return Case(orjson.dumps(item), "shape", INVALID, ("do not stream",))
        if choice == 8:
            params["max_tokens"] = 2048
            params["thinking"] = {"type": "enabled", "budget_tokens": rng.randint(2048, 3000)}
            return Case(orjson.dumps(item), "shape", INVALID, ("must be greater than",))
        if choice == 9:
            params.pop("tools", None)
            params["tool_choice"] = {"type": "any"}
            return Case(orjson.dumps(item), "shape", INVALID, ("no tools are defined",))
        if choice == 10:
            params["messages"][0] = {"role": "user", "content": ""}
            return Case(orjson.dumps(item), "shape", INVALID, ("empty text",))
        if choice == 11 and self.models:
            params["model"] = "claude-unknown-9"
            return Case(orjson.dumps(item), "shape", INVALID, ("not available",), "params.model")
        if choice == 12 and self.models:
            params["model"] = self.models[0]["id"]
            params["max_tokens"] = self.models[0]["max_tokens"] + 1
            params.pop("thinking", None)
            return Case(orjson.dumps(item), "shape", INVALID, ("allows",), "params.max_tokens")
        if choice == 13:
            params["max_tokens"] = rng.choice((0, -1, -(2**63)))
            return Case(orjson.dumps(item), "shape", INVALID, ("minimum",), "params.max_tokens")
        if choice == 14:
            raw = b"\xef\xbb\xbf" + orjson.dumps(item)  # a byte order mark...
            if self.number == 1:  # ...which the first line may start with
                return Case(raw, "shape", VALID, custom_id=custom_id)
            return Case(raw, "shape", INVALID, ("BOM",))
        if rng.random() < 0.5:
            params["tools"] = [self.tool("weather")]
            params["tool_choice"] = {"type": "tool", "name": "stocks"}
            return Case(orjson.dumps(item), "shape", INVALID, ("not among the tools",))
        params.pop("tool_choice", None)
        params["tools"] = [self.search_tool()]
        params["tools"][0].update(allowed_domains=["a.org"], blocked_domains=["b.org"])
        return Case(orjson.dumps(item), "shape", INVALID, ("both allowed_domains",))

    def _mixed(self, item: dict, custom_id: str) -> Case:
        """Changes made one after another; one that no longer fits what the ones before left
        (a field they removed) is left out."""
        rng = self.rng
        unfit = (KeyError, IndexError, TypeError, AttributeError, ValueError, AssertionError)
        for _ in range(rng.randint(1, 2)):
            with contextlib.suppress(*unfit):
                getattr(self, f"_{rng.choice(IN_PLACE)}")(item, custom_id)
        last = rng.choice([kind for kind in KINDS if kind not in ("valid", "blank", "mixed")])
        try:
            raw = getattr(self, f"_{last}")(item, custom_id).raw
        except unfit:  # (a list made a dict may have gained a number as a key)
            raw = orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS)
        return Case(raw, "mixed", UNKNOWN)

    def _damage(self, item: dict, custom_id: str) -> Case:
        rng = self.rng
        raw = bytearray(orjson.dumps(item))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw))
            action = rng.randrange(3)
            if action == 0:
                raw[at] = rng.randrange(256)
            elif action == 1:
                raw.insert(at, rng.randrange(256))
            elif len(raw) > 1:
                del raw[at]
        line = bytes(raw).replace(b"\n", b" ")  # one line stays one line
        return Case(line, "damage", UNKNOWN)


@dataclass
class Verdict:
    cases: int = 0
    crashes: int = 0
    masked: int = 0
    false_alarms: int = 0
    by_kind: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, other: "Verdict") -> None:
        self.cases += other.cases
        self.crashes += other.crashes
        self.masked += other.masked
        self.false_alarms += other.false_alarms
        self.by_kind.update(other.by_kind)
        self.examples.extend(other.examples[: max(0, 40 - len(self.examples))])

    def note(self, what: str, case: Case | None, line: int | None, detail: str) -> None:
        self.by_kind[f"{what}:{case.kind if case else 'file'}"] += 1
        if len(self.examples) < 40:
            shown = case.raw[:160] if case else b""
            self.examples.append(f"{what} line {line} ({detail}): {shown!r}")


def _names(problem_field: str, wanted: str) -> bool:
    """Whether a problem's field is the field changed, an object holding it or one inside it."""
    if problem_field.endswith("…"):  # a path cut short
        stem = problem_field[:-1]
        return wanted.startswith(stem) or stem.startswith(wanted)
    shorter, longer = sorted((problem_field, wanted), key=len)
    return longer.startswith(shorter) and (
        len(longer) == len(shorter) or longer[len(shorter)] in ".["
    )


def judge(cases: list[tuple[int, Case]], accepted: set[int], problems: list[tuple]) -> Verdict:
    """What the check found (`accepted` line numbers; `problems` as (line, field, message))
    held to what the cases say, each with its line number."""
    verdict = Verdict(cases=len(cases))
    by_line: dict[int, list[tuple[str, str]]] = {}
    for line, problem_field, message in problems:
        if line is None:
            if message != "The file holds no requests.":
                verdict.masked += 1
                verdict.note("masked", None, None, f"no line number: {message[:120]}")
            continue
        by_line.setdefault(line, []).append((problem_field, message))
    for number, case in cases:
        said = by_line.get(number, [])
        taken = number in accepted
        if any(words in message for _, message in said for words in CRASH_WORDS):
            verdict.crashes += 1
            verdict.note("crash", case, number, said[0][1][:160])
            continue
        if any("\x00" in text for problem in said for text in problem):
            # PostgreSQL keeps no NUL in text: storing this report would fail.
            verdict.crashes += 1
            verdict.note("crash", case, number, f"a NUL in a problem: {said[:2]}"[:300])
            continue
        if case.verdict == BLANK:
            if taken or said:
                verdict.false_alarms += 1
                verdict.note("false alarm", case, number, "a blank line was not passed over")
            continue
        if not taken and not said:
            verdict.crashes += 1
            verdict.note("crash", case, number, "never checked")
            continue
        if case.verdict == VALID:
            if not taken or said:
                verdict.false_alarms += 1
                detail = said[0][1][:160] if said else "not kept"
                verdict.note("false alarm", case, number, detail)
            continue
        if case.verdict == UNKNOWN:
            continue
        if taken:
            verdict.masked += 1
            verdict.note("masked", case, number, "accepted")
            continue
        if not any(
            (not case.words or any(words in message for words in case.words))
            and (case.field is None or _names(problem_field, case.field))
            and message != "The request was refused."
            for problem_field, message in said
        ):
            verdict.masked += 1
            wanted = f"{case.words} at {case.field}"
            verdict.note("masked", case, number, f"wanted {wanted}; got {said[:3]}"[:400])
    return verdict


def plain(cell: str) -> str:
    """A report's cell as the check worded it: the report makes a cell that would start a
    formula plain text with a leading quote (batches.spreadsheets.safe_cell)."""
    return cell[1:] if cell.startswith("'") and safe_cell(cell[1:]) == cell else cell


def found(merged: Merged) -> tuple[set[int], list[tuple]]:
    """The lines the check kept, and every problem it reported as (line, field, message)."""
    accepted: set[int] = set()
    for result, drop in zip(merged.segments, merged.dropped, strict=True):
        lines = result.accepted.lines
        accepted.update(lines[p] for p in range(len(lines)) if p not in drop)
    problems: list[tuple] = []
    # A report the check wrote may quote more than the csv module reads by default (the check
    # itself reads CSV uploads in this process, so the limit is set back at once).
    limit = csv.field_size_limit(1 << 30)
    try:
        for path in merged.report_paths:
            with open(path, encoding="utf-8", newline="") as rows:
                for line, field, message, _ in csv.reader(rows):
                    problems.append((int(line) if line else None, plain(field), plain(message)))
    finally:
        csv.field_size_limit(limit)
    return accepted, problems
