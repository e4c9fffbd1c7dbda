"""What tokens cost: the price table, and the actual cost of a result from its `usage`.

Prices live in one data file, batches/data/prices.json (standard prices per million tokens, the
batch discount, and the cache multipliers). The estimate before a file is sent is
`batches.intake.estimating`.
"""

import json
from decimal import Decimal
from functools import cache
from pathlib import Path

# The token counts of a `usage`, each priced at its own rate (batches, results, usage rows and
# tries store the four).
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
PRICES_FILE = Path(__file__).parent / "data" / "prices.json"
MILLION = Decimal(1_000_000)


@cache
def price_table() -> dict:
    return json.loads(PRICES_FILE.read_text(encoding="utf-8"))


def prices_for(model: str) -> dict | None:
    """The standard per-million prices of a model, by the longest matching prefix."""
    models = price_table()["models"]
    matches = [prefix for prefix in models if model.startswith(prefix)]
    return models[max(matches, key=len)] if matches else None


def usage_cost(model: str, usage: dict, *, batch: bool = True) -> Decimal | None:
    """The actual price of one answer from its `usage`, cache reads and writes included: at the
    batch price, or (`batch=False`, a request sent on its own) the standard one."""
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
    return cost * Decimal(str(table["batch_discount"])) if batch else cost


def standard_cost_at_most(model: str, input_tokens: int, max_tokens: int) -> Decimal | None:
    """A request's most expensive outcome sent on its own (no batch discount): its estimated
    input, then max_tokens of output."""
    return usage_cost(
        model, {"input_tokens": input_tokens, "output_tokens": max_tokens}, batch=False
    )
