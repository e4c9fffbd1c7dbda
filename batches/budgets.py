"""The workspaces' monthly budgets: what a month has spent and committed, and what an upload's
most expensive outcome would do to its workspace's budget and its own spend cap.

Spent is the stored cost of the batches created this month (months run by the dashboard's time
zone; a batch counts in the month of its creation, when it was sent, though its cost is known only
once its results are stored). Committed is what is not known yet, counted at its most expensive
outcome: the estimates of the month's batches still running or with results to store, and of the
uploads between Submit and their batches. A batch made outside the dashboard has no estimate: it
is counted, not priced (`unestimated`).

The usage pages' figures are batches.usage, the notices of a budget's thresholds
batches.notices. Submit checks and commits under a lock on the workspace's row, so that two
Submits cannot both spend what is left.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from batches.models import Batch, Submission, SubmissionPart, Workspace


def _money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.0001"))


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
    def left_to_spend(self) -> Decimal | None:
        """What may still be spent: never below zero (a page says "over by" for the rest)."""
        left = self.left
        return None if left is None else max(left, Decimal(0))

    @property
    def over_by(self) -> Decimal:
        left = self.left
        return Decimal(0) if left is None else max(-left, Decimal(0))

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
    # And uploads between Submit and their batches: a part whose batch the API has not answered
    # yet counts at its most expensive outcome too, or two Submits a second apart would each
    # see the other as $0 committed.
    parts = SubmissionPart.objects.filter(
        Q(batch__in=pending)
        | Q(
            batch__isnull=True,
            submission__workspace=workspace,
            submission__state=Submission.State.SUBMITTING,
        )
    ).select_related("submission")
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


def spend_check(submission: Submission, now: datetime | None = None) -> SpendCheck:
    return SpendCheck(
        estimate=_money(estimate_total(submission.estimate or {})),
        cap=submission.spend_cap,
        budget=budget_status(submission.workspace, now),
    )
