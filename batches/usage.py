"""The usage pages' figures (the workspaces' budgets are batches.budgets).

Cost, tokens, requests, errors and turnaround of the batches created in a period, in buckets of a
day, a week or a month in the viewer's time zone. Everything comes from two tables: the batches
(their counts and times) and their usage rows (BatchUsage: per model, result type and error type,
written once a batch's results are stored), never from the results themselves, so a page costs a
handful of grouped queries whatever the number of results.

A batch counts in the bucket of its creation: that is when it was sent, and a batch's cost is
known only once its results are stored, days later at most.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    Case,
    CharField,
    Count,
    DateField,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, TruncDay, TruncMonth, TruncWeek
from django.db.models.lookups import GreaterThanOrEqual, LessThan
from django.utils import timezone
from django.utils.html import format_html_join

from batches.models import Batch, BatchUsage, Result, Workspace
from batches.pricing import USAGE_FIELDS

if TYPE_CHECKING:  # django-stubs' helper types (a development requirement)
    from django_stubs_ext import WithAnnotations


class _Bucketed(TypedDict):
    """What `bucket_of` annotates: the first day of a row's bucket (SQLite: as text)."""

    bucket: date | str


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


def bucket_of(field: str, period: Period) -> Func:
    """An expression for the first day of the bucket that `field` (a UTC time) falls in, in the
    period's time zone.

    PostgreSQL truncates in its own time zone arithmetic. SQLite would call a Python function
    per row for that (Django's), a quarter of a second at a year of batches; there the zone's
    offsets during the period (two changes a year at most) become a CASE of SQLite's own
    datetime(), and the bucket is text, "YYYY-MM-DD"."""
    if connection.vendor != "sqlite":
        # As a date (`::date`): the database's own value, where a datetime would be made aware
        # in Python row by row.
        return Cast(BUCKETS[period.bucket](field, tzinfo=period.zone), DateField())
    segments = _offsets(period)
    local: Any = _shifted(field, segments[-1][1])
    if len(segments) > 1:
        local = Case(
            *(
                When(**{f"{field}__lt": until}, then=_shifted(field, offset))
                for until, offset in segments[:-1]
            ),
            default=local,
            output_field=CharField(),
        )
    if period.bucket == "month":
        return Func(Value("%Y-%m-01"), local, function="strftime", output_field=CharField())
    if period.bucket == "week":  # back to the Monday on or before the day
        modifiers = (Value("-6 days"), Value("weekday 1"))
        return Func(local, *modifiers, function="date", output_field=CharField())
    return Func(local, function="date", output_field=CharField())


def _shifted(field: str, seconds: int) -> Func:
    return Func(F(field), Value(f"{seconds:+d} seconds"), function="datetime")


def _offsets(period: Period) -> list[tuple[datetime, int]]:
    """The zone's UTC offsets (seconds) over the period: (until when, offset), the last one's
    "until" the end. Each change is found to the minute by halving the day it happens in."""

    def offset(moment: datetime) -> int:
        delta = moment.astimezone(period.zone).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    start = period.start_at.astimezone(UTC) - timedelta(days=1)
    end = period.end_at.astimezone(UTC) + timedelta(days=1)
    segments: list[tuple[datetime, int]] = []
    moment, current = start, offset(start)
    while moment < end:
        following = min(moment + timedelta(days=1), end)
        if offset(following) != current:
            low, high = moment, following
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if offset(middle) == current:
                    low = middle
                else:
                    high = middle
            segments.append((high, current))
            current = offset(high)
        moment = following
    segments.append((end, current))
    return segments


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

    def shown(self) -> list[list[str]]:
        """The rows as the page shows them: thousands separated, money to four places."""
        return [[_shown(cell) for cell in row] for row in self.rows]

    def body_html(self) -> str:
        """The table's body rows, escaped, made here rather than by a template loop over each
        cell (a year by week is a thousand cells, a fifth of the page's time in templates)."""
        return format_html_join(
            "\n",
            '<tr><th scope="row">{}</th>{}</tr>',
            (
                (first, format_html_join("", '<td class="num">{}</td>', ((cell,) for cell in rest)))
                for first, *rest in self.shown()
            ),
        )


def _shown(cell: object) -> str:
    if isinstance(cell, bool) or cell is None:
        return ""
    if isinstance(cell, int | Decimal):
        return f"{cell:,}"
    return str(cell)


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
    """Every figure of the usage page for these workspaces and this period: one grouped query
    of the usage rows, and two of the batches (three on a database without percentiles)."""
    found = Usage(period, workspaces)
    ids = [workspace.pk for workspace in workspaces]
    grouped = (
        BatchUsage.objects.filter(
            workspace_id__in=ids, created_at__gte=period.start_at, created_at__lt=period.end_at
        )
        .annotate(bucket=bucket_of("created_at", period))
        .values("bucket", "model", "submitted_by", "workspace", "result_type", "error_type")
        .annotate(
            requests_sum=Sum("requests"),
            **{name: Sum(name) for name in USAGE_FIELDS},
            cost_sum=Sum("cost"),
            unpriced=Count("pk", filter=Q(cost__isnull=True)),
        )
        .order_by()
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Grouped in memory (a hash) rather than sorted on disk: the planner counts on a
            # group per row, more than the default 4 MB holds. For this query only.
            cursor.execute("SET LOCAL work_mem = '64MB'")
        groups = [_UsageGroup.of(row) for row in grouped]
    _from_usage_rows(found, groups)
    batches = Batch.objects.filter(
        workspace_id__in=ids, created_at__gte=period.start_at, created_at__lt=period.end_at
    )
    _from_batches(found, batches.annotate(bucket=bucket_of("created_at", period)))
    return found


@dataclass
class _UsageGroup:
    """One row of the grouped usage query."""

    day: date
    model: str
    person: int | None
    workspace: int
    result_type: str
    error_type: str
    requests: int
    tokens: list[int]
    cost: Decimal
    unpriced: bool

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "_UsageGroup":
        tokens = [row.get(name) or 0 for name in USAGE_FIELDS]
        return cls(
            day=_day(row["bucket"]),
            model=row["model"] or "(none)",
            person=row["submitted_by"],
            workspace=row["workspace"],
            result_type=row["result_type"],
            error_type=row["error_type"],
            requests=row["requests_sum"] or 0,
            tokens=tokens,
            cost=row["cost_sum"] or Decimal(0),
            # A row without a price that has tokens (errored results have none to price).
            unpriced=bool(row["unpriced"]) and any(tokens),
        )


def _day(bucket: str | datetime | date) -> date:
    if isinstance(bucket, str):  # SQLite's (see bucket_of)
        return date.fromisoformat(bucket)
    return bucket.date() if isinstance(bucket, datetime) else bucket


def _money(value: Decimal | Literal[0] | None) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.0001"))


class _Totals:
    """Requests, the four token counts and the cost of a group of usage rows."""

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = [0, 0, 0, 0]
        self.cost = Decimal(0)

    def add(self, group: _UsageGroup) -> None:
        self.requests += group.requests
        tokens, more = self.tokens, group.tokens
        tokens[0] += more[0]
        tokens[1] += more[1]
        tokens[2] += more[2]
        tokens[3] += more[3]
        self.cost += group.cost

    def row(self, name: str) -> list:
        return [name, self.requests, *self.tokens, _money(self.cost)]


class _Groupings:
    """The usage rows' totals by model, by bucket and model, by bucket, by person, by workspace
    and in all, added up in one pass over the rows (a year by week is thousands of them)."""

    def __init__(self, groups: list[_UsageGroup]):
        self.by_model: dict[Any, _Totals] = {}
        self.by_day_and_model: dict[Any, _Totals] = {}
        self.by_day: dict[Any, _Totals] = {}
        self.by_person: dict[Any, _Totals] = {}
        self.by_workspace: dict[Any, _Totals] = {}
        self.everything = _Totals()
        tables: tuple[tuple[dict[Any, _Totals], Callable[[_UsageGroup], Any]], ...] = (
            (self.by_model, lambda group: group.model),
            (self.by_day_and_model, lambda group: (group.day, group.model)),
            (self.by_day, lambda group: group.day),
            (self.by_person, lambda group: group.person),
            (self.by_workspace, lambda group: group.workspace),
        )
        for group in groups:
            self.everything.add(group)
            for table, key in tables:
                name = key(group)
                totals = table.get(name)
                if totals is None:
                    totals = table[name] = _Totals()
                totals.add(group)


def _most_costly_first(totals: dict[Any, _Totals]) -> list:
    return sorted(totals, key=lambda name: (-totals[name].cost, -totals[name].requests, str(name)))


def _from_usage_rows(found: Usage, groups: list[_UsageGroup]) -> None:
    period = found.period
    buckets = period.buckets()
    columns = ["Requests", *TOKEN_LABELS, "Cost (USD)"]
    totals = _Groupings(groups)
    by_model, by_day_and_model, by_day = totals.by_model, totals.by_day_and_model, totals.by_day
    models = _most_costly_first(by_model)
    found.by_model = Table(["Model", *columns], [by_model[model].row(model) for model in models])
    priced_models = [model for model in models if model != "(none)"]
    found.cost_by_model = Table(
        ["Period", *priced_models, "Total"],
        [
            [
                period.label(day),
                *[
                    _money(by_day_and_model[day, model].cost)
                    if (day, model) in by_day_and_model
                    else _money(0)
                    for model in priced_models
                ],
                _money(by_day[day].cost if day in by_day else 0),
            ]
            for day in buckets
        ],
    )
    found.tokens_over_time = Table(
        ["Period", *TOKEN_LABELS],
        [
            [period.label(day), *(by_day[day].tokens if day in by_day else [0, 0, 0, 0])]
            for day in buckets
        ],
    )
    everything = totals.everything
    found.requests = everything.requests
    found.tokens = dict(zip(USAGE_FIELDS, everything.tokens, strict=True))
    found.cost = _money(everything.cost)
    found.unpriced_models = sorted({group.model for group in groups if group.unpriced})

    by_person = totals.by_person
    ids = [person for person in by_person if person is not None]
    names = {user.pk: user.get_username() for user in get_user_model().objects.filter(pk__in=ids)}
    found.by_person = Table(
        ["Person", *columns],
        [
            by_person[person].row(names.get(person, OUTSIDE))
            for person in _most_costly_first(by_person)
        ],
    )
    by_workspace = totals.by_workspace
    workspace_names = {workspace.pk: workspace.name for workspace in found.workspaces}
    found.by_workspace = Table(
        ["Workspace", *columns],
        [
            by_workspace[workspace].row(workspace_names[workspace])
            for workspace in _most_costly_first(by_workspace)
        ],
    )
    errors: dict[str, int] = {}
    for group in groups:
        if group.result_type == Result.Type.ERRORED:
            kind = group.error_type or "(none given)"
            errors[kind] = errors.get(kind, 0) + group.requests
    stored = everything.requests
    found.errors = Table(
        ["Error type", "Requests", "Share of stored results"],
        [
            [kind, count, f"{count / stored:.2%}" if stored else ""]
            for kind, count in sorted(errors.items(), key=lambda item: (-item[1], item[0]))
        ],
    )


class Percentile(Aggregate):
    """PostgreSQL's nearest-rank percentile (one of the values, never between two), as
    `_percentile` works it out in Python elsewhere."""

    function = "PERCENTILE_DISC"
    template = "%(function)s(%(share)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DurationField()

    def __init__(self, expression: ExpressionWrapper, share: float) -> None:
        super().__init__(expression, share=float(share))


def _from_batches(found: Usage, batches: "QuerySet[WithAnnotations[Batch, _Bucketed]]") -> None:
    """What the batches' own rows tell: outcomes over time, turnaround, batch sizes."""
    period = found.period
    buckets = period.buckets()
    ended = Q(processing_status=Batch.Status.ENDED, ended_at__isnull=False)
    duration = ExpressionWrapper(F("ended_at") - F("created_at"), output_field=DurationField())
    in_sql = connection.vendor == "postgresql"
    # The batch sizes' histogram in the same pass (summed over the buckets below).
    size = F("succeeded") + F("errored") + F("canceled") + F("expired") + F("processing")
    edges = [*SIZE_BINS, None]
    bins = {
        f"bin{index}": Count(
            "pk",
            filter=Q(GreaterThanOrEqual(size, low), *([LessThan(size, high)] if high else [])),
        )
        for index, (low, high) in enumerate(pairwise(edges))
    }
    per_bucket = batches.values("bucket").annotate(
        succeeded_sum=Sum("succeeded"),
        errored_sum=Sum("errored"),
        canceled_sum=Sum("canceled"),
        expired_sum=Sum("expired"),
        ended_count=Count("pk", filter=ended),
        batches_count=Count("pk"),
        without_results=Count("pk", filter=ended & Q(results_ingested_at__isnull=True)),
        **bins,
        **(
            {
                "median": Percentile(duration, 0.5),
                "p95": Percentile(duration, 0.95),
            }
            if in_sql
            else {}
        ),
    )
    # Each bucket's row, to which SQLite's percentiles are added below (keys of no query's).
    rows: dict[date, Any] = {_day(row["bucket"]): row for row in per_bucket.order_by()}
    if not in_sql:  # the percentiles in Python: the durations of each bucket's ended batches
        # In seconds by SQLite's own julianday() (Django's duration would call Python per row).
        julian = {
            name: Func(F(name), function="julianday", output_field=FloatField())
            for name in ("ended_at", "created_at")
        }
        seconds = ExpressionWrapper(
            (julian["ended_at"] - julian["created_at"]) * 86400.0, output_field=FloatField()
        )
        durations: dict[date, list[float]] = {}
        for bucket, took in batches.filter(ended).values_list("bucket", seconds):
            durations.setdefault(_day(bucket), []).append(round(took, 3))
        for day, row in rows.items():
            values = sorted(durations.get(day, []))
            row["median"] = timedelta(seconds=_percentile(values, 0.5)) if values else None
            row["p95"] = timedelta(seconds=_percentile(values, 0.95)) if values else None
    found.outcomes = Table(
        ["Period", "Succeeded", "Errored", "Canceled", "Expired", "Ended requests", "Error rate"]
    )
    found.turnaround = Table(
        ["Period", "Batches ended", "Median (hours)", "95th percentile (hours)"]
    )
    for day in buckets:
        row = rows.get(day, {})
        counts = [
            row.get(f"{name}_sum") or 0 for name in ("succeeded", "errored", "canceled", "expired")
        ]
        total = sum(counts)
        rate = f"{counts[1] / total:.2%}" if total else ""
        found.outcomes.rows.append([period.label(day), *counts, total, rate])
        median, p95 = row.get("median"), row.get("p95")
        found.turnaround.rows.append(
            [
                period.label(day),
                row.get("ended_count") or 0,
                _hours(median.total_seconds()) if median is not None else "",
                _hours(p95.total_seconds()) if p95 is not None else "",
            ]
        )

    def over_buckets(name: str) -> int:
        return sum(row[name] or 0 for row in rows.values())

    found.batches = over_buckets("batches_count")
    found.without_results = over_buckets("without_results")
    found.sizes = Table(
        ["Requests in the batch", "Batches"],
        [[_size_label(index), over_buckets(f"bin{index}")] for index in range(len(SIZE_BINS))],
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
