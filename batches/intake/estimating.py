"""What a file will cost before it is sent: input tokens estimated, output at its most.

There is no tokenizer offline, so text counts as one token per 4 characters (rounded up), an
image as about 1,600 tokens and a PDF page as about 1,500: enough to tell a $3 batch from a $300
one. Output is priced at each request's `max_tokens`, the most it can cost. The walk looks at the
places text sits in a request (system, each message's content blocks, tool definitions) rather
than at every value, and `cache_control` is found in the request's bytes.

Only requests the check accepted come here: they keep intake.bounds (nesting at most MAX_DEPTH,
so orjson can encode any part; max_tokens an integer of at most MAX_INTEGER).
"""

from decimal import Decimal, localcontext

import orjson

from batches.pricing import MILLION, price_table, prices_for

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600
DOCUMENT_PAGE_TOKENS = 1500
# Per message, the API adds a few tokens of framing.
MESSAGE_OVERHEAD_TOKENS = 4
# Digits the costs are worked out with: Decimal's default 28 would not hold a file of requests
# each asking for bounds.MAX_INTEGER output tokens (over 10**27 in all), priced to 1/10,000 of
# a dollar, and quantize refuses a number it cannot hold.
COST_DIGITS = 60


def _block_chars_and_tokens(block: object) -> tuple[int, int, bool]:
    """(characters of text, tokens of images and documents, cache_control) of one block."""
    if type(block) is str:
        return len(block), 0, False
    if type(block) is not dict:
        return 0, 0, False
    cached = "cache_control" in block
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return (len(text) if type(text) is str else 0), 0, cached
    if kind == "image":
        return 0, IMAGE_TOKENS, cached
    if kind == "document":
        source = block.get("source")
        data = source.get("data") if type(source) is dict else None
        size = len(data) if type(data) is str else 0
        if type(source) is dict and source.get("type") == "text":
            return size, 0, cached
        # A base64 PDF: about 3 KB of base64 per page of text.
        return 0, max(1, size // 3000) * DOCUMENT_PAGE_TOKENS, cached
    if kind in ("tool_use", "tool_result"):
        value = block.get("input", block.get("content", ""))
        return len(orjson.dumps(value)), 0, cached
    return len(orjson.dumps(block)), 0, cached


def _content(content: object) -> tuple[int, int, bool]:
    if type(content) is str:
        return len(content), 0, False
    chars = tokens = 0
    cached = False
    if type(content) is list:
        for block in content:
            more_chars, more_tokens, more_cached = _block_chars_and_tokens(block)
            chars += more_chars
            tokens += more_tokens
            cached = cached or more_cached
    return chars, tokens, cached


def request_tokens(params: dict) -> tuple[int, bool]:
    """(estimated input tokens, whether the request uses prompt caching)."""
    chars, tokens, cached = _content(params.get("system") or "")
    for message in params.get("messages") or ():
        content = message.get("content") if type(message) is dict else None
        more_chars, more_tokens, more_cached = _content(content)
        chars += more_chars
        tokens += more_tokens + MESSAGE_OVERHEAD_TOKENS
        cached = cached or more_cached
    tools = params.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
        cached = cached or any(type(tool) is dict and "cache_control" in tool for tool in tools)
    cached = cached or "cache_control" in params
    return -(-chars // CHARS_PER_TOKEN) + tokens, cached


def estimate_input_tokens(params: dict) -> int:
    return request_tokens(params)[0]


class Estimate:
    """Adds up requests as they are checked, per model; memory is one row per model:
    [requests, input tokens, max output tokens, requests using the prompt cache]."""

    def __init__(self) -> None:
        self.per_model: dict[str, list[int]] = {}

    def row(self, model: str) -> list[int]:
        """The model's row, made when its first request is counted."""
        return self.per_model.setdefault(model, [0, 0, 0, 0])

    def add(self, params: dict) -> None:
        """Runs for every request of a file. The usual request (model, max_tokens and one user
        message whose content is a string, nothing else) is counted without the walk;
        `Check.run_jsonl` counts it inline the same way: keep the two alike."""
        model = params["model"]
        row = self.per_model.get(model) or self.row(model)
        messages = params["messages"]
        if len(params) == 3 and len(messages) == 1 and type(messages[0]["content"]) is str:
            row[1] += -(-len(messages[0]["content"]) // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
        else:
            tokens, cached = request_tokens(params)
            row[1] += tokens
            row[3] += cached
        row[0] += 1
        row[2] += params["max_tokens"]

    def remove(self, params: dict) -> None:
        """Take back a request added before (one found to be a duplicate later)."""
        row = self.per_model[params["model"]]
        tokens, cached = request_tokens(params)
        row[0] -= 1
        row[1] -= tokens
        row[2] -= params["max_tokens"]
        row[3] -= cached

    def merge(self, other: "Estimate") -> None:
        for model, row in other.per_model.items():
            mine = self.per_model.setdefault(model, [0, 0, 0, 0])
            for index, value in enumerate(row):
                mine[index] += value

    def as_dict(self) -> dict:
        with localcontext(prec=COST_DIGITS):
            return self._as_dict()

    def _as_dict(self) -> dict:
        table = price_table()
        discount = Decimal(str(table["batch_discount"]))
        rows, input_cost, output_cost, unpriced = [], Decimal(0), Decimal(0), []
        for model, (requests, input_tokens, max_output, cached) in sorted(self.per_model.items()):
            prices = prices_for(model)
            entry = {
                "model": model,
                "requests": requests,
                "input_tokens": input_tokens,
                "max_output_tokens": max_output,
                "cached": cached,
                "input_cost": None,
                "max_output_cost": None,
            }
            if prices is None:
                unpriced.append(model)
            else:
                cost_in = input_tokens * Decimal(str(prices["input"])) / MILLION * discount
                cost_out = max_output * Decimal(str(prices["output"])) / MILLION * discount
                entry["input_cost"] = str(cost_in.quantize(Decimal("0.0001")))
                entry["max_output_cost"] = str(cost_out.quantize(Decimal("0.0001")))
                input_cost += cost_in
                output_cost += cost_out
            rows.append(entry)
        return {
            "models": rows,
            "input_tokens": sum(row["input_tokens"] for row in rows),
            "max_output_tokens": sum(row["max_output_tokens"] for row in rows),
            "input_cost": str(input_cost.quantize(Decimal("0.0001"))),
            "max_output_cost": str(output_cost.quantize(Decimal("0.0001"))),
            "unpriced_models": unpriced,
            "cached_requests": sum(row["cached"] for row in rows),
        }
