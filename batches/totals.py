"""A batch's usage totals and actual cost, worked out from its stored results.

Totals are worked out once per ingestion (one grouped query for any number of batches) and stored
on the batch, so list pages read them from the batch rows and never scan results; the same query's
rows, per model, result type and error type, are kept as BatchUsage for the usage pages.
"""

from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from batches.models import Batch, BatchUsage, Result
from batches.pricing import USAGE_FIELDS, usage_cost


def stale_totals(batches: Iterable[Batch]) -> list[Batch]:
    return [
        batch
        for batch in batches
        if batch.results_ingested_at
        and (batch.totals_at is None or batch.totals_at < batch.results_ingested_at)
    ]


def usage_rows(batches: dict[int, Batch]) -> list[BatchUsage]:
    """The stored results of these batches (by id) counted by model, result type and error
    type, with their usage priced: one grouped query, whatever the number of results."""
    rows = (
        Result.objects.filter(batch_id__in=batches)
        .values("batch_id", "model", "result_type", "error_type")
        .annotate(requests=Count("pk"), **{name: Sum(name) for name in USAGE_FIELDS})
        .order_by()
    )
    found = []
    for row in rows:
        # .get: the stubs know the keys values() names, not the ones annotate() takes from a dict.
        usage = {name: row.get(name) or 0 for name in USAGE_FIELDS}
        batch = batches[row["batch_id"]]
        found.append(
            BatchUsage(
                batch_id=batch.pk,
                workspace_id=batch.workspace_id,
                created_at=batch.created_at,
                submitted_by_id=batch.submitted_by_id,
                model=row["model"],
                result_type=row["result_type"],
                error_type=row["error_type"],
                requests=row.get("requests") or 0,
                cost=usage_cost(row["model"], usage) if any(usage.values()) else Decimal(0),
                **usage,
            )
        )
    return found


def store_totals(batches: Iterable[Batch]) -> None:
    """Count and price the stored results per batch, model, result type and error type (the
    usage pages' rows), and keep their sums on each batch (the lists' totals and cost).

    Costs nothing when every batch is current; otherwise three queries for all of them.
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
    rows = usage_rows(by_id)
    for row in rows:
        batch = by_id[row.batch_id]
        for name in USAGE_FIELDS:
            setattr(batch, name, getattr(batch, name) + getattr(row, name))
        if row.cost is None:
            batch.cost_incomplete = True
        else:
            assert batch.cost is not None  # every stale batch's cost was set to 0 above
            batch.cost += row.cost
    with transaction.atomic():
        BatchUsage.objects.filter(batch_id__in=by_id).delete()
        BatchUsage.objects.bulk_create(rows)
        Batch.objects.bulk_update(stale, [*USAGE_FIELDS, "cost", "cost_incomplete", "totals_at"])
