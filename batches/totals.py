"""A batch's usage totals and actual cost, worked out from its stored results.

Totals are worked out once per ingestion (one grouped query for any number of batches) and stored
on the batch, so list pages read them from the batch rows and never scan results.
"""

from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from batches.models import Batch, Result
from batches.pricing import usage_cost

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def stale_totals(batches) -> list[Batch]:
    return [
        batch
        for batch in batches
        if batch.results_ingested_at
        and (batch.totals_at is None or batch.totals_at < batch.results_ingested_at)
    ]


def store_totals(batches) -> None:
    """Sum the stored results' usage per batch and model, price it, and keep it on each batch.

    Costs nothing when every batch is current; otherwise two queries for all of them.
    """
    stale = stale_totals(batches)
    if not stale:
        return
    by_id = {batch.pk: batch for batch in stale}
    now = timezone.now()
    for batch in stale:
        for name in USAGE_FIELDS:
            setattr(batch, name, 0)
        batch.cost, batch.cost_incomplete, batch.totals_at = Decimal(0), False, now
    rows = (
        Result.objects.filter(batch_id__in=by_id, result_type=Result.Type.SUCCEEDED)
        .values("batch_id", "model")
        .annotate(**{name: Sum(name) for name in USAGE_FIELDS})
        .order_by()
    )
    for row in rows:
        batch = by_id[row["batch_id"]]
        # .get: the stubs know the keys values() names, not the ones annotate() takes from a dict.
        usage = {name: row.get(name) or 0 for name in USAGE_FIELDS}
        for name, value in usage.items():
            setattr(batch, name, getattr(batch, name) + value)
        cost = usage_cost(row["model"], usage)
        if cost is None:
            batch.cost_incomplete = True
        else:
            assert batch.cost is not None  # every stale batch's cost was set to 0 above
            batch.cost += cost
    Batch.objects.bulk_update(stale, [*USAGE_FIELDS, "cost", "cost_incomplete", "totals_at"])
