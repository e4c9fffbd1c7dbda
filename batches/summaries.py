"""What the pages say about a batch's results as a whole: usage totals, actual cost, errors.

Totals are worked out once per ingestion (one grouped query for any number of batches) and stored
on the batch, so list pages read them from the batch rows and never scan results.
"""

from decimal import Decimal

from django.db.models import Count, Min, Q, Sum
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
        usage = {name: row[name] or 0 for name in USAGE_FIELDS}
        for name, value in usage.items():
            setattr(batch, name, getattr(batch, name) + value)
        cost = usage_cost(row["model"], usage)
        if cost is None:
            batch.cost_incomplete = True
        else:
            batch.cost += cost
    Batch.objects.bulk_update(stale, [*USAGE_FIELDS, "cost", "cost_incomplete", "totals_at"])


def estimate(batch: Batch) -> dict | None:
    """The estimate made before the batch was submitted (dashboard batches only)."""
    submission = batch.submission
    if submission is None or not submission.estimate:
        return None
    data = submission.estimate
    try:
        low = Decimal(data.get("input_cost") or 0)
        high = low + Decimal(data.get("max_output_cost") or 0)
    except ArithmeticError:
        return None
    parts = max(1, len(data.get("parts") or []) or submission.parts.count())
    return {
        "input_tokens": data.get("input_tokens"),
        "max_output_tokens": data.get("max_output_tokens"),
        "input_cost": low,
        "max_cost": high,
        "parts": parts,
        "unpriced": data.get("unpriced_models") or [],
    }


def error_summary(batch: Batch, limit: int = 20) -> list[dict]:
    """Errored results grouped by error type: how many, and one example each (two queries)."""
    groups = list(
        Result.objects.filter(batch=batch, result_type=Result.Type.ERRORED)
        .values("error_type")
        .annotate(count=Count("pk"), example_id=Min("custom_id"))
        .order_by("-count", "error_type")[:limit]
    )
    if not groups:
        return []
    examples = {
        row.custom_id: row
        for row in Result.objects.filter(
            batch=batch, custom_id__in=[group["example_id"] for group in groups]
        ).only("custom_id", "error_message")
    }
    for group in groups:
        example = examples.get(group["example_id"])
        group["example_message"] = example.error_message if example else ""
        group["needs_fix"] = group["error_type"] == "invalid_request_error"
    return groups


def facet_counts(batch: Batch) -> dict:
    """The explorer's filter choices with counts: error types and stop reasons."""
    error_types = (
        Result.objects.filter(batch=batch, result_type=Result.Type.ERRORED)
        .values_list("error_type")
        .annotate(count=Count("pk"))
        .order_by("-count")
    )
    stop_reasons = (
        Result.objects.filter(batch=batch, result_type=Result.Type.SUCCEEDED)
        .exclude(stop_reason="")
        .values_list("stop_reason")
        .annotate(count=Count("pk"))
        .order_by("-count")
    )
    return {"error_types": list(error_types), "stop_reasons": list(stop_reasons)}


def has_problems_filter() -> Q:
    return Q(errored__gt=0) | Q(expired__gt=0)
