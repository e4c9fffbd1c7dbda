"""The usage pages' figures and the workspaces' budgets.

Cost, tokens, requests, errors and turnaround of the batches created in a period, in buckets of a
day, a week or a month in the viewer's time zone. Everything comes from two tables: the batches
(their counts and times) and their usage rows (BatchUsage: per model, result type and error type,
written once a batch's results are stored), never from the results themselves, so a page costs a
handful of grouped queries whatever the number of results.

A batch counts in the bucket (and the budget month) of its creation: that is when it was sent,
and a batch's cost is known only once its results are stored, days later at most.
"""

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncMonth, TruncWeek
from django.utils import timezone

from batches.models import Batch, BatchUsage, Result, SubmissionPart, Workspace

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
TOKEN_LABELS = ("Input", "Output", "Cache writes", "Cache reads")
BUCKETS = {"day": TruncDay, "week": TruncWeek, "month": TruncMonth}
# A period holds at most this many buckets (two years by day): a page and its chart stay small.
MAX_BUCKETS = 731
# Requests per batch, in bins whose edges grow tenfold (the last one open).
SIZE_BINS = (1, 10, 100, 1_000, 10_000, 100_000)
OUTSIDE = "Outside the dashboard"


@dataclass(frozen=True)
class Period:
    """The days from `start` to `end` (both included) in `zone`, in buckets of `bucket`."""

    start: date
    end: date
    bucket: str
    zone: ZoneInfo

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=self.zone)

    @property
    def end_at(self) -> datetime:
        """The first moment after the period."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=self.zone)

    def bucket_of(self, day: date) -> date:
        if self.bucket == "month":
            return day.replace(day=1)
        if self.bucket == "week":
            return day - timedelta(days=day.weekday())  # weeks start on Monday, as ISO's do
        return day

    def buckets(self) -> list[date]:
        found, day = [], self.bucket_of(self.start)
        while day <= self.end:
            found.append(day)
            if self.bucket == "month":
                day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            else:
                day += timedelta(days=7 if self.bucket == "week" else 1)
        return found

    def label(self, day: date) -> str:
        if self.bucket == "month":
            return day.strftime("%b %Y")
        if self.bucket == "week":
            return f"Week of {day:%-d %b %Y}"
        return f"{day:%a %-d %b %Y}"


def default_period(zone: ZoneInfo, today: date | None = None) -> Period:
    today = today or timezone.localdate(timezone=zone)
    return Period(today - timedelta(days=29), today, "day", zone)


def too_many_buckets(period: Period) -> bool:
    return len(period.buckets()) > MAX_BUCKETS


@dataclass
class Table:
    """A chart's numbers: its columns' titles and its rows (the first cell names the row)."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


@dataclass
class Usage:
    period: Period
    workspaces: list[Workspace]
    batches: int = 0
    requests: int = 0
    cost: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=dict)
    unpriced_models: list[str] = field(default_factory=list)
    # Ended batches whose results are not stored (yet, or no longer available): no cost known.
    without_results: int = 0
    cost_by_model: Table = field(default_factory=lambda: Table([]))
    tokens_over_time: Table = field(default_factory=lambda: Table([]))
    by_model: Table = field(default_factory=lambda: Table([]))
    by_person: Table = field(default_factory=lambda: Table([]))
    by_workspace: Table = field(default_factory=lambda: Table([]))
    outcomes: Table = field(default_factory=lambda: Table([]))
    errors: Table = field(default_factory=lambda: Table([]))
    turnaround: Table = field(default_factory=lambda: Table([]))
    sizes: Table = field(default_factory=lambda: Table([]))

    @property
    def error_rate(self) -> float | None:
        ended = sum(row[5] for row in self.outcomes.rows)
        errored = sum(row[2] for row in self.outcomes.rows)
        return errored / ended if ended else None

    def tables(self) -> dict[str, Table]:
        """Every table by the name its CSV download goes by."""
        return {
            "cost-by-model": self.cost_by_model,
            "tokens": self.tokens_over_time,
            "models": self.by_model,
            "people": self.by_person,
            "workspaces": self.by_workspace,
            "outcomes": self.outcomes,
            "errors": self.errors,
            "turnaround": self.turnaround,
            "batch-sizes": self.sizes,
        }


def usage(workspaces: list[Workspace], period: Period) -> Usage:
    """Every figure of the usage page for these workspaces and this period."""
    found = Usage(period, workspaces)
    ids = [workspace.pk for workspace in workspaces]
    batches = Batch.objects.filter(
        workspace_id__in=ids, created_at__gte=period.start_at, created_at__lt=period.end_at
    )
    rows = BatchUsage.objects.filter(
        batch__workspace_id__in=ids,
        batch__created_at__gte=period.start_at,
        batch__created_at__lt=period.end_at,
    )
    _cost_and_tokens(found, rows)
    _by_person(found, rows)
    _by_workspace(found, rows)
    _errors(found, rows)
    _batches(found, batches)
    return found


def _sums(**filters):
    """The sums of a group of usage rows: requests, tokens, cost and the unpriced rows."""
    return {
        "requests_sum": Sum("requests", **filters),
        **{name: Sum(name, **filters) for name in TOKEN_FIELDS},
        "cost_sum": Sum("cost", **filters),
        "unpriced": Count("pk", filter=Q(cost__isnull=True)),
    }


def _money(value) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.0001"))


def _cost_and_tokens(found: Usage, rows) -> None:
    period = found.period
    grouped = (
        rows.annotate(bucket=BUCKETS[period.bucket]("batch__created_at", tzinfo=period.zone))
        .values("bucket", "model")
        .annotate(**_sums())
        .order_by()
    )
    buckets = period.buckets()
    cost: dict[tuple[date, str], Decimal] = {}
    tokens = {day: [0, 0, 0, 0] for day in buckets}
    per_model: dict[str, list] = {}
    unpriced = set()
    for row in grouped:
        day = row["bucket"].date() if isinstance(row["bucket"], datetime) else row["bucket"]
        model = row["model"] or "(none)"
        values = [row.get(name) or 0 for name in TOKEN_FIELDS]
        cost[day, model] = cost.get((day, model), Decimal(0)) + (row["cost_sum"] or 0)
        if day in tokens:
            tokens[day] = [a + b for a, b in zip(tokens[day], values, strict=True)]
        totals = per_model.setdefault(model, [0, 0, 0, 0, 0, Decimal(0)])
        totals[0] += row["requests_sum"] or 0
        for index, value in enumerate(values, start=1):
            totals[index] += value
        totals[5] += row["cost_sum"] or 0
        if row["unpriced"] and any(values):
            unpriced.add(model)
    models = sorted(per_model, key=lambda name: -per_model[name][5])
    priced_models = [model for model in models if model != "(none)"]
    found.cost_by_model = Table(
        ["Period", *priced_models, "Total"],
        [
            [
                period.label(day),
                *[_money(cost.get((day, model))) for model in priced_models],
                _money(sum((cost.get((day, model), Decimal(0)) for model in models), Decimal(0))),
            ]
            for day in buckets
        ],
    )
    found.tokens_over_time = Table(
        ["Period", *TOKEN_LABELS], [[period.label(day), *tokens[day]] for day in buckets]
    )
    found.by_model = Table(
        ["Model", "Requests", *TOKEN_LABELS, "Cost (USD)"],
        [[model, *per_model[model][:5], _money(per_model[model][5])] for model in models],
    )
    found.requests = sum(per_model[model][0] for model in models)
    found.tokens = {
        name: sum(per_model[model][index] for model in models)
        for index, name in enumerate(TOKEN_FIELDS, start=1)
    }
    found.cost = _money(sum((per_model[model][5] for model in models), Decimal(0)))
    found.unpriced_models = sorted(unpriced)


def _grouped_by(rows, key: str) -> list[dict]:
    return list(rows.values(key).annotate(**_sums()).order_by("-cost_sum", key))


def _dimension_row(name: str, row: dict) -> list:
    return [
        name,
        row["requests_sum"] or 0,
        *[row.get(field_name) or 0 for field_name in TOKEN_FIELDS],
        _money(row["cost_sum"]),
    ]


def _by_person(found: Usage, rows) -> None:
    grouped = _grouped_by(rows, "batch__submitted_by")
    ids = [row["batch__submitted_by"] for row in grouped if row["batch__submitted_by"]]
    names = {user.pk: user.get_username() for user in get_user_model().objects.filter(pk__in=ids)}
    found.by_person = Table(
        ["Person", "Requests", *TOKEN_LABELS, "Cost (USD)"],
        [_dimension_row(names.get(row["batch__submitted_by"], OUTSIDE), row) for row in grouped],
    )


def _by_workspace(found: Usage, rows) -> None:
    grouped = _grouped_by(rows, "batch__workspace")
    names = {workspace.pk: workspace.name for workspace in found.workspaces}
    found.by_workspace = Table(
        ["Workspace", "Requests", *TOKEN_LABELS, "Cost (USD)"],
        [_dimension_row(names[row["batch__workspace"]], row) for row in grouped],
    )


def _errors(found: Usage, rows) -> None:
    grouped = (
        rows.filter(result_type=Result.Type.ERRORED)
        .values("error_type")
        .annotate(count=Sum("requests"))
        .order_by("-count", "error_type")
    )
    stored = rows.aggregate(total=Sum("requests"))["total"] or 0
    found.errors = Table(
        ["Error type", "Requests", "Share of stored results"],
        [
            [
                row["error_type"] or "(none given)",
                row["count"],
                f"{row['count'] / stored:.2%}" if stored else "",
            ]
            for row in grouped
        ],
    )


def _batches(found: Usage, batches) -> None:
    """What the batches' own rows tell: outcomes over time, turnaround, batch sizes."""
    period = found.period
    buckets = period.buckets()
    outcomes = {day: [0, 0, 0, 0, 0] for day in buckets}
    durations: dict[date, list[float]] = {day: [] for day in buckets}
    sizes = [0] * len(SIZE_BINS)
    rows = batches.values_list(
        "created_at",
        "ended_at",
        "processing_status",
        "succeeded",
        "errored",
        "canceled",
        "expired",
        "processing",
        "results_ingested_at",
    )
    for created, ended, status, succeeded, errored, canceled, expired, processing, stored in rows:
        found.batches += 1
        day = period.bucket_of(timezone.localtime(created, period.zone).date())
        if day not in outcomes:
            continue
        counts = outcomes[day]
        counts[0] += succeeded
        counts[1] += errored
        counts[2] += canceled
        counts[3] += expired
        counts[4] += processing
        if status == Batch.Status.ENDED and ended is not None:
            durations[day].append((ended - created).total_seconds())
            if stored is None:
                found.without_results += 1
        total = succeeded + errored + canceled + expired + processing
        if total:
            sizes[max(i for i, edge in enumerate(SIZE_BINS) if total >= edge)] += 1
    found.outcomes = Table(
        ["Period", "Succeeded", "Errored", "Canceled", "Expired", "Ended requests", "Error rate"],
    )
    for day in buckets:
        succeeded, errored, canceled, expired, _ = outcomes[day]
        ended = succeeded + errored + canceled + expired
        rate = f"{errored / ended:.2%}" if ended else ""
        found.outcomes.rows.append(
            [period.label(day), succeeded, errored, canceled, expired, ended, rate]
        )
    found.turnaround = Table(
        ["Period", "Batches ended", "Median (hours)", "95th percentile (hours)"]
    )
    for day in buckets:
        values = sorted(durations[day])
        median = _hours(statistics.median(values)) if values else ""
        p95 = _hours(_percentile(values, 0.95)) if values else ""
        found.turnaround.rows.append([period.label(day), len(values), median, p95])
    found.sizes = Table(
        ["Requests in the batch", "Batches"],
        [[_size_label(index), count] for index, count in enumerate(sizes)],
    )


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values: one of them, never between two."""
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def _hours(seconds: float) -> Decimal:
    return Decimal(seconds / 3600).quantize(Decimal("0.01"))


def _size_label(index: int) -> str:
    low = SIZE_BINS[index]
    if index + 1 == len(SIZE_BINS):
        return f"{low:,} or more"
    high = SIZE_BINS[index + 1] - 1
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


# Budgets --------------------------------------------------------------------------------------


@dataclass
class BudgetStatus:
    """A workspace's budget this month: spent (stored costs), committed (the estimates of the
    month's batches whose cost is not known yet) and left."""

    workspace: Workspace
    month: date
    budget: Decimal | None
    spent: Decimal = Decimal(0)
    committed: Decimal = Decimal(0)
    # The month's unfinished batches made outside the dashboard: no estimate is known.
    unestimated: int = 0

    @property
    def left(self) -> Decimal | None:
        if self.budget is None:
            return None
        return self.budget - self.spent - self.committed

    @property
    def share_spent(self) -> float | None:
        return float(self.spent / self.budget) if self.budget else None

    @property
    def share_used(self) -> float | None:
        """Spent and committed together, as a share of the budget."""
        return float((self.spent + self.committed) / self.budget) if self.budget else None


def month_start(now: datetime | None = None) -> date:
    """The first day of the current month in the dashboard's time zone."""
    now = now or timezone.now()
    return timezone.localtime(now, ZoneInfo(settings.TIME_ZONE)).date().replace(day=1)


def budget_status(workspace: Workspace, now: datetime | None = None) -> BudgetStatus:
    month = month_start(now)
    zone = ZoneInfo(settings.TIME_ZONE)
    start = datetime.combine(month, time.min, tzinfo=zone)
    end = datetime.combine((month + timedelta(days=32)).replace(day=1), time.min, tzinfo=zone)
    status = BudgetStatus(workspace, month, workspace.monthly_budget)
    batches = Batch.objects.filter(workspace=workspace, created_at__gte=start, created_at__lt=end)
    status.spent = _money(batches.aggregate(spent=Sum("cost"))["spent"])
    # Not known yet: batches that run, or ended with their results still to be stored.
    pending = batches.filter(totals_at__isnull=True, gone_at__isnull=True, archived_at__isnull=True)
    parts = SubmissionPart.objects.filter(batch__in=pending).select_related("submission")
    estimated: set[int] = set()
    for part in parts:
        if part.batch_id is not None:
            estimated.add(part.batch_id)
        status.committed += part_estimate(part)
    status.committed = _money(status.committed)
    status.unestimated = pending.exclude(pk__in=estimated).count()
    return status


def estimate_total(estimate: dict) -> Decimal:
    """The most expensive outcome of an upload's estimate: its input, and every request
    answering with max_tokens."""
    return Decimal(estimate.get("input_cost") or 0) + Decimal(estimate.get("max_output_cost") or 0)


def part_estimate(part: SubmissionPart) -> Decimal:
    """One batch's share of its upload's estimate, by its share of the requests."""
    submission = part.submission
    if not submission.request_count:
        return Decimal(0)
    share = Decimal(part.request_count) / Decimal(submission.request_count)
    return estimate_total(submission.estimate or {}) * share


@dataclass
class SpendCheck:
    """An upload's most expensive outcome beside its own spend cap and its workspace's budget:
    what its page shows, and what Submit refuses or asks an admin to confirm."""

    estimate: Decimal
    cap: Decimal | None
    budget: BudgetStatus

    @property
    def over_cap(self) -> bool:
        return self.cap is not None and self.estimate > self.cap

    @property
    def over_budget(self) -> bool:
        left = self.budget.left
        return left is not None and self.estimate > left


def spend_check(submission, now: datetime | None = None) -> SpendCheck:
    return SpendCheck(
        estimate=_money(estimate_total(submission.estimate or {})),
        cap=submission.spend_cap,
        budget=budget_status(submission.workspace, now),
    )
