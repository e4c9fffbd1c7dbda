"""What a batch costs: an estimate before it is submitted, the actual cost from `usage` after.

Prices live in one data file, batches/data/prices.json (standard prices per million tokens, the
batch discount, and the cache multipliers). Token counts before submitting are estimates: the
dashboard has no tokenizer, so text counts as one token per 4 characters (rounded up), an image as
about 1,600 tokens and a PDF page as about 1,500 — enough to tell a $3 batch from a $300 one.
"""

import json
import math
from decimal import Decimal
from functools import cache
from pathlib import Path

PRICES_FILE = Path(__file__).parent / "data" / "prices.json"
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600
DOCUMENT_PAGE_TOKENS = 1500
# Per message and per request, the API adds a few tokens of framing.
MESSAGE_OVERHEAD_TOKENS = 4
MILLION = Decimal(1_000_000)


@cache
def price_table() -> dict:
    return json.loads(PRICES_FILE.read_text(encoding="utf-8"))


def prices_for(model: str) -> dict | None:
    """The standard per-million prices of a model, by the longest matching prefix."""
    models = price_table()["models"]
    matches = [prefix for prefix in models if model.startswith(prefix)]
    return models[max(matches, key=len)] if matches else None


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _block_tokens(block) -> int:
    if isinstance(block, str):
        return _text_tokens(block)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return _text_tokens(block.get("text", ""))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return _text_tokens(source.get("data", ""))
        # A base64 PDF: about 3 KB of base64 per page of text, 1,500 tokens each.
        return max(1, len(source.get("data", "")) // 3000) * DOCUMENT_PAGE_TOKENS
    if kind in ("tool_use", "tool_result"):
        return _text_tokens(json.dumps(block.get("input", block.get("content", ""))))
    return _text_tokens(json.dumps(block))


def _content_tokens(content) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content)
    return 0


def _has_cache_control(value) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_control(item) for item in value)
    return False


def estimate_input_tokens(params: dict) -> int:
    tokens = _content_tokens(params.get("system", ""))
    for message in params.get("messages") or []:
        if isinstance(message, dict):
            tokens += MESSAGE_OVERHEAD_TOKENS + _content_tokens(message.get("content"))
    if params.get("tools"):
        tokens += _text_tokens(json.dumps(params["tools"]))
    return tokens


class Estimate:
    """Adds up requests as they are validated, per model; memory is one row per model."""

    def __init__(self):
        self.per_model: dict[str, dict] = {}

    def add(self, params: dict) -> None:
        model = params.get("model") or "unknown"
        row = self.per_model.setdefault(
            model, {"requests": 0, "input_tokens": 0, "max_output_tokens": 0, "cached": 0}
        )
        row["requests"] += 1
        row["input_tokens"] += estimate_input_tokens(params)
        max_tokens = params.get("max_tokens")
        row["max_output_tokens"] += max_tokens if isinstance(max_tokens, int) else 0
        row["cached"] += _has_cache_control(params)

    def as_dict(self) -> dict:
        table = price_table()
        discount = Decimal(str(table["batch_discount"]))
        rows, input_cost, output_cost, unpriced = [], Decimal(0), Decimal(0), []
        for model, row in sorted(self.per_model.items()):
            prices = prices_for(model)
            entry = {"model": model, **row, "input_cost": None, "max_output_cost": None}
            if prices is None:
                unpriced.append(model)
            else:
                cost_in = row["input_tokens"] * Decimal(str(prices["input"])) / MILLION * discount
                cost_out = (
                    row["max_output_tokens"] * Decimal(str(prices["output"])) / MILLION * discount
                )
                entry["input_cost"] = str(cost_in.quantize(Decimal("0.0001")))
                entry["max_output_cost"] = str(cost_out.quantize(Decimal("0.0001")))
                input_cost += cost_in
                output_cost += cost_out
            rows.append(entry)
        return {
            "models": rows,
            "input_tokens": sum(row["input_tokens"] for row in self.per_model.values()),
            "max_output_tokens": sum(row["max_output_tokens"] for row in self.per_model.values()),
            "input_cost": str(input_cost.quantize(Decimal("0.0001"))),
            "max_output_cost": str(output_cost.quantize(Decimal("0.0001"))),
            "unpriced_models": unpriced,
            "cached_requests": sum(row["cached"] for row in self.per_model.values()),
        }


def usage_cost(model: str, usage: dict) -> Decimal | None:
    """The actual batch price of one result from its `usage`, cache reads and writes included."""
    prices = prices_for(model or "")
    if prices is None:
        return None
    table = price_table()
    per_input = Decimal(str(prices["input"])) / MILLION
    per_output = Decimal(str(prices["output"])) / MILLION
    cost = (
        usage.get("input_tokens", 0) * per_input
        + usage.get("output_tokens", 0) * per_output
        + usage.get("cache_creation_input_tokens", 0)
        * per_input
        * Decimal(str(table["cache_write_multiplier"]))
        + usage.get("cache_read_input_tokens", 0)
        * per_input
        * Decimal(str(table["cache_read_multiplier"]))
    )
    return cost * Decimal(str(table["batch_discount"]))
