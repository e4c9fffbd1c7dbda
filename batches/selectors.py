"""What the pages read: every query a page or fragment runs, in one place, and nothing that writes.

Views parse the request and pick a template; the questions they ask of the database are here, so
each has one answer (and one place to make it fast). Facts about one batch are on the model.
"""

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
)
from django.utils.functional import cached_property

from batches import budgets, changes, search
from batches.models import (
    Batch,
    BatchLabel,
    BatchQuerySet,
    BatchRequest,
    Result,
    ResultText,
    Submission,
    UserPreference,
    Workspace,
)

BATCHES_PER_PAGE = 25
RESULTS_PER_PAGE = 50
STATUS_FILTERS = {
    "active": "Running (in progress or canceling)",
    "in_progress": "In progress",
    "canceling": "Canceling",
    "ended": "Ended",
    "canceled": "Canceled",
    "deleted": "Deleted from the API",
}
PROBLEM_FILTERS = {
    "any": "Has errored or expired requests",
    "errored": "Has errored requests",
    "expired": "Has expired requests",
    "none": "No problems",
}
logger = logging.getLogger(__name__)

# A user id in a query string: digits only (not str.isdigit(): "²" is a digit int() refuses).
USER_ID = re.compile(r"[0-9]{1,18}")


# Batches ----------------------------------------------------------------------------------------


def filter_batches(batches: BatchQuerySet[Batch], chosen: dict[str, str]) -> BatchQuerySet[Batch]:
    """The batch list's filters (already cleaned text from the query string) applied."""
    if chosen.get("workspace"):
        batches = batches.filter(workspace__slug=chosen["workspace"])
    status = chosen.get("status")
    if status == "active":
        batches = batches.running()
    elif status in ("in_progress", "canceling"):
        batches = batches.filter(processing_status=status, gone_at=None)
    elif status == "ended":
        batches = batches.filter(processing_status=Batch.Status.ENDED, gone_at=None)
    elif status == "canceled":
        batches = batches.filter(cancel_initiated_at__isnull=False)
    elif status == "deleted":
        batches = batches.filter(gone_at__isnull=False)
    problems = chosen.get("problems")
    if problems == "any":
        batches = batches.with_problems()
    elif problems == "errored":
        batches = batches.filter(errored__gt=0)
    elif problems == "expired":
        batches = batches.filter(expired__gt=0)
    elif problems == "none":
        batches = batches.filter(errored=0, expired=0)
    submitter = chosen.get("submitter") or ""
    if submitter == "outside":
        batches = batches.filter(submitted_by=None)
    elif USER_ID.fullmatch(submitter):
        batches = batches.filter(submitted_by_id=int(submitter))
    if label := chosen.get("label"):
        batches = batches.filter(labels__name=label)
    if q := chosen.get("q"):
        batches = batches.filter(
            Q(name__icontains=q) | Q(api_id__icontains=q) | Q(source_filename__icontains=q)
        )
    return batches


# The batch list's sortable columns: the sort's name in the query string, and its order.
SORTS = {
    "created": ("created_at",),
    "requests": ("requests_total",),
    "duration": ("duration",),
    "cost": ("cost",),
}


def sort_key(text: str) -> tuple[str, bool]:
    """(column, descending) from the query string's `sort` ("-cost", "requests"...); newest
    first for anything else."""
    name = text.removeprefix("-")
    if name not in SORTS:
        return "created", True
    return name, text.startswith("-")


def _sorted(batches: BatchQuerySet[Batch], sort: str) -> BatchQuerySet[Batch]:
    name, descending = sort_key(sort)
    if name == "requests":
        batches = batches.annotate(
            requests_total=F("processing")
            + F("succeeded")
            + F("errored")
            + F("canceled")
            + F("expired")
        )
    elif name == "duration":
        batches = batches.annotate(
            duration=ExpressionWrapper(F("ended_at") - F("created_at"), DurationField())
        )
    field = F(SORTS[name][0])
    # Batches without a cost or an end (still running) come last either way.
    order = field.desc(nulls_last=True) if descending else field.asc(nulls_last=True)
    return batches.order_by(order, "-created_at", "-id")


def batch_page(
    user: User | AnonymousUser,
    chosen: dict[str, str],
    page_number: str | None,
    *,
    workspace: Workspace | None = None,
) -> Page:
    """One page of the batches `user` can see, filtered and sorted (newest first unless the
    person chose a column)."""
    batches = Batch.objects.visible_to(user)
    if workspace is not None:
        batches = batches.filter(workspace=workspace)
    batches = (
        filter_batches(batches, chosen)
        .select_related("workspace", "submitted_by", "submission")
        .prefetch_related("labels")
    )
    batches = _sorted(batches, chosen.get("sort", ""))
    # The page count comes from the cache while no batch of the user's workspaces changed.
    filters = (workspace.pk if workspace else None, tuple(sorted(chosen.items())))
    paginator = _CountedPaginator(
        batches,
        BATCHES_PER_PAGE,
        counted=lambda: _kept_under_stamps(user, "batches", filters, batches.count),
    )
    return paginator.get_page(page_number)


class _CountedPaginator(Paginator):
    """A paginator whose row count comes from `counted()` (which may answer from the cache)."""

    def __init__(self, batches: QuerySet[Batch], per_page: int, *, counted: Callable[[], int]):
        super().__init__(batches, per_page)
        self.batches = batches
        self._counted = counted

    @cached_property
    def count(self) -> int:
        return self._counted()

    def page(self, number: int | str) -> Page:
        """A page found by its ids first (a narrow scan past the earlier pages' rows), then
        those rows whole: page 400 costs little more than page 1."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        ids = list(self.batches.values_list("pk", flat=True)[bottom:top])
        rows = {row.pk: row for row in self.batches.filter(pk__in=ids)}
        return Page([rows[pk] for pk in ids if pk in rows], number, self)


def labels_in_use(workspaces: Iterable[Workspace], chosen: str = "", limit: int = 200) -> list[str]:
    """The labels on these workspaces' batches (the list's label filter), the chosen one
    included even when no batch has it any more."""
    found = list(
        BatchLabel.objects.filter(batch__workspace__in=workspaces)
        .values_list("name", flat=True)
        .distinct()
        .order_by("name")[:limit]
    )
    if chosen and chosen not in found:
        found.append(chosen)
    return found


def submitters(workspaces: Iterable[Workspace]) -> list[User]:
    """The people who submitted a batch in these workspaces (the list's submitter filter)."""
    users = get_user_model().objects.filter(submitted_batches__workspace__in=workspaces)
    return list(users.distinct().order_by("username"))


def workspaces_with_counts(user: User | AnonymousUser) -> QuerySet[Workspace]:
    return Workspace.objects.visible_to(user).annotate(
        batch_count=Count("batches", filter=Q(batches__gone_at=None)),
        active_count=Count(
            "batches",
            filter=Q(batches__gone_at=None, batches__processing_status__in=Batch.ACTIVE),
        ),
    )


def header_counts(user: User | AnonymousUser) -> dict:
    """The header's running count and the newest batch's id, so a batch created (say, by a
    script) and ended between two polls still counts as news; and whether an upload of the
    user's workspaces is being submitted (its batches appear any moment). Two queries, on every
    page: so kept under the change stamps of the user's workspaces, and counted again only
    after one of them changed."""
    return _kept_under_stamps(user, "header", (), lambda: _header_counts(user))


def _header_counts(user: User | AnonymousUser) -> dict:
    totals = Batch.objects.visible_to(user).aggregate(
        running=Count("pk", filter=Q(processing_status__in=Batch.ACTIVE, gone_at=None)),
        newest=Max("pk"),
    )
    submitting = Submission.objects.filter(
        workspace__in=Workspace.objects.visible_to(user), state=Submission.State.SUBMITTING
    ).exists()
    return {
        "running": totals["running"],
        "state": f"{totals['running']}.{totals['newest'] or 0}",
        "submitting": submitting,
    }


# Counts of what the user's workspaces hold change only when one of their change stamps moves
# (batches.changes bumps a stamp on every write, and again at commit): kept under the stamps they
# were counted at, they are counted once per change instead of once per page view.
COUNTED_TIMEOUT = 600


def visible_workspace_ids(user: User | AnonymousUser) -> dict[str, int] | None:
    """{slug: id} of the workspaces the person sees, from the cache when it has them (None when
    the cache cannot be reached)."""

    def load() -> dict[str, int]:
        return dict(Workspace.objects.visible_to(user).values_list("slug", "pk"))

    return changes.visible_workspaces(user, load)


def _kept_under_stamps[T](
    user: User | AnonymousUser, name: str, extra: tuple, count: Callable[[], T]
) -> T:
    visible = visible_workspace_ids(user)
    stamps = changes.stamps(sorted(visible.values())) if visible is not None else None
    if stamps is None:
        return count()
    digest = hashlib.blake2b(repr((stamps, extra)).encode(), digest_size=12).hexdigest()
    return _cached(f"counted-{name}:{user.pk}:{digest}", COUNTED_TIMEOUT, count)


def _cached[T](key: str, timeout: int, count: Callable[[], T]) -> T:
    """`count()`, kept in the cache under `key`; counted afresh when the cache cannot answer
    (the cache is an aid, never the truth)."""
    try:
        kept = cache.get(key)
    except Exception as error:
        logger.warning("Could not read the cache: %s", error)
        return count()
    if kept is not None:
        return kept
    value = count()
    try:
        cache.set(key, value, timeout)
    except Exception as error:
        logger.warning("Could not write the cache: %s", error)
    return value


def preference(user: User) -> UserPreference:
    """The user's preferences, read only (one query; defaults when none are stored)."""
    return UserPreference.objects.filter(user=user).first() or UserPreference(user=user)


def estimate(batch: Batch) -> dict | None:
    """The estimate made before the batch was submitted (dashboard batches only)."""
    submission = batch.submission
    if submission is None or not submission.estimate:
        return None
    data = submission.estimate
    try:
        low = Decimal(data.get("input_cost") or 0)
        high = budgets.estimate_total(data)
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


def recent_resubmissions(batch: Batch, limit: int = 5) -> list[Submission]:
    return list(batch.resubmissions.select_related("created_by").order_by("-created_at")[:limit])


# Results ----------------------------------------------------------------------------------------


# Results across batches ------------------------------------------------------------------------

FOUND_RESULTS = 10


def results_across_batches(
    user: User | AnonymousUser, text: str, workspace: Workspace | None = None
) -> dict:
    """What the batch list's search box finds among results: those whose custom_id is exactly
    `text` in every batch the person sees (an index lookup), and, within one workspace, those
    whose answer holds it (the trigram index on PostgreSQL, where the batch's search text is
    written). At most FOUND_RESULTS of each, newest batch first."""
    text = text.strip()
    if not text or len(text) > 64:
        return {"by_id": [], "by_text": []}
    batches = Batch.objects.visible_to(user)
    if workspace is not None:
        batches = batches.filter(workspace=workspace)
    by_id = list(
        Result.objects.filter(custom_id=text, batch__in=batches)
        .select_related("batch__workspace")
        .order_by("-batch__created_at")[:FOUND_RESULTS]
    )
    by_text: list[Result] = []
    if workspace is not None and len(text) >= search.MIN_INDEXED_LENGTH:
        if search.supported():
            found = ResultText.objects.filter(batch__workspace=workspace, haystack__ilike=text)
            matching = Result.objects.filter(pk__in=found.values("result_id")[:FOUND_RESULTS])
        else:
            matching = Result.objects.filter(
                batch__workspace=workspace, answer_text__icontains=text
            )
        by_text = list(
            matching.exclude(pk__in=[result.pk for result in by_id])
            .select_related("batch__workspace")
            .order_by("-batch__created_at", "custom_id")[:FOUND_RESULTS]
        )
    return {"by_id": by_id, "by_text": by_text}


def filter_results(batch: Batch, chosen: dict[str, str]) -> QuerySet[Result]:
    """The results explorer's filters (cleaned text) applied to the batch's results."""
    results = Result.objects.filter(batch=batch)
    if chosen.get("type") in Result.Type.values:
        results = results.filter(result_type=chosen["type"])
    if chosen.get("error_type"):
        results = results.filter(result_type=Result.Type.ERRORED, error_type=chosen["error_type"])
    if chosen.get("stop_reason"):
        results = results.filter(stop_reason=chosen["stop_reason"])
    if q := chosen.get("q"):
        results = search_results(batch, results, q)
    return results


def search_results(batch: Batch, results: QuerySet[Result], text: str) -> QuerySet[Result]:
    """Results whose custom_id, answer or error message holds `text`, in any case: through the
    trigram index once batches.search has written the batch's search text, else by reading
    the batch's results."""
    if search.is_indexed(batch) and len(text) >= search.MIN_INDEXED_LENGTH:
        found = ResultText.objects.filter(batch=batch, haystack__ilike=text)
        return results.filter(pk__in=found.values("result_id"))
    return results.filter(
        Q(custom_id__icontains=text)
        | Q(answer_text__icontains=text)
        | Q(error_message__icontains=text)
    )


def results_page(results: QuerySet[Result], *, after: str = "", before: str = "") -> dict:
    """One page of results in custom_id order, paged by key (`after`/`before` a custom_id) on the
    unique (batch, custom_id) index, so page 2,000 costs what page 1 does."""
    results = results.only(
        "custom_id",
        "result_type",
        "error_type",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "answer_text",
        "error_message",
    )
    if before:
        rows = list(
            results.filter(custom_id__lt=before).order_by("-custom_id")[: RESULTS_PER_PAGE + 1]
        )
        has_previous = len(rows) > RESULTS_PER_PAGE
        rows = rows[:RESULTS_PER_PAGE][::-1]
        has_next = True
    else:
        if after:
            results = results.filter(custom_id__gt=after)
        rows = list(results.order_by("custom_id")[: RESULTS_PER_PAGE + 1])
        has_next = len(rows) > RESULTS_PER_PAGE
        rows = rows[:RESULTS_PER_PAGE]
        has_previous = bool(after)
    return {
        "results": rows,
        "has_next": has_next and bool(rows),
        "has_previous": has_previous and bool(rows),
        "first_id": rows[0].custom_id if rows else "",
        "last_id": rows[-1].custom_id if rows else "",
    }


def neighbours(batch: Batch, custom_id: str) -> tuple[str | None, str | None]:
    """The custom_ids before and after this one in the batch (for previous/next links)."""
    ids = Result.objects.filter(batch=batch).values_list("custom_id", flat=True)
    previous_id = ids.filter(custom_id__lt=custom_id).order_by("-custom_id").first()
    next_id = ids.filter(custom_id__gt=custom_id).order_by("custom_id").first()
    return previous_id, next_id


def request_for(batch: Batch, custom_id: str) -> BatchRequest | None:
    """The stored request behind a result (dashboard batches only)."""
    if batch.submission_id is None:
        return None
    return BatchRequest.objects.filter(
        submission_id=batch.submission_id, custom_id=custom_id
    ).first()


# Summaries of a batch's stored results: they cannot change once the results are complete, so
# they are counted once and kept in the cache under the time ingestion finished (a new ingestion
# makes a new key). Counting 100,000 results on every page view cost 15 to 45 ms a view.
SUMMARY_TIMEOUT = 7 * 24 * 3600


def _kept_while_final[T](batch: Batch, name: str, count: Callable[[], T]) -> T:
    if batch.results_ingested_at is None:
        return count()
    key = f"results-{name}:{batch.pk}:{batch.results_ingested_at.timestamp()}"
    return _cached(key, SUMMARY_TIMEOUT, count)


def error_summary(batch: Batch, limit: int = 20) -> list[dict]:
    """Errored results grouped by error type: how many, and one example each (two queries, or
    none once the results are final and counted)."""
    return _kept_while_final(batch, f"errors-{limit}", lambda: _error_summary(batch, limit))


def _error_summary(batch: Batch, limit: int) -> list[dict]:
    groups: list[dict[str, Any]] = [
        dict(group)
        for group in Result.objects.filter(batch=batch, result_type=Result.Type.ERRORED)
        .values("error_type")
        .annotate(count=Count("pk"), example_id=Min("custom_id"))
        .order_by("-count", "error_type")[:limit]
    ]
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
    """The explorer's filter choices with counts: error types and stop reasons (counted once
    the results are final, then read from the cache)."""
    return _kept_while_final(batch, "facets", lambda: _facet_counts(batch))


def _facet_counts(batch: Batch) -> dict:
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
