"""What `/metrics` reports, in Prometheus' text format (the official client's collector types):
read at each scrape from the database, from Redis (the API calls of every process, see
batches.call_stats) and from the broker (Celery's queue). Nothing here is kept in one process's
memory, so any web process answers for the whole installation."""

from collections.abc import Iterator

from django.db.models import BooleanField, Case, Count, Min, Sum, When
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from batches import call_stats, ratelimit
from batches.models import AuditEntry, Batch

PREFIX = "batch_dashboard"


class DashboardCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._batches()
        yield from self._api_calls()
        yield self._queue_length()
        yield from self._audit_head()

    def _batches(self) -> Iterator[Metric]:
        batches = GaugeMetricFamily(
            f"{PREFIX}_batches",
            "Batches in the mirror, by workspace and status (deleted: gone from the API)",
            labels=["workspace", "status"],
        )
        rows = (
            Batch.objects.annotate(
                present=Case(
                    When(gone_at=None, then=True), default=False, output_field=BooleanField()
                )
            )
            .values("workspace__slug", "processing_status", "present")
            .annotate(count=Count("id"))
            .order_by()
        )
        counted: dict[tuple[str, str], int] = {}
        for row in rows:
            status = row["processing_status"] if row["present"] else "deleted"
            label = (row["workspace__slug"], status)
            counted[label] = counted.get(label, 0) + row["count"]
        for label, count in sorted(counted.items()):
            batches.add_metric(list(label), count)
        yield batches

        stored = GaugeMetricFamily(
            f"{PREFIX}_results_stored",
            "Results stored in the dashboard, by workspace",
            labels=["workspace"],
        )
        totals = Batch.objects.values("workspace__slug").annotate(n=Sum("results_ingested"))
        for total in totals.order_by("workspace__slug"):
            stored.add_metric([total["workspace__slug"]], total["n"] or 0)
        yield stored

        lag = GaugeMetricFamily(
            f"{PREFIX}_sync_lag_seconds",
            "Age of the oldest last refresh of a batch still running, by workspace",
            labels=["workspace"],
        )
        now = timezone.now()
        oldest = (
            Batch.objects.running()
            .values("workspace__slug")
            .annotate(oldest=Min("last_polled_at"), created=Min("created_at"))
            .order_by("workspace__slug")
        )
        for group in oldest:
            since = group["oldest"] or group["created"]
            lag.add_metric([group["workspace__slug"]], max(0.0, (now - since).total_seconds()))
        yield lag

        backlog = GaugeMetricFamily(
            f"{PREFIX}_ingestion_backlog",
            "Ended batches whose results are still to be stored",
        )
        backlog.add_metric([], Batch.objects.filter(Batch.results_fetchable(now)).count())
        yield backlog

    def _api_calls(self) -> Iterator[Metric]:
        counts = call_stats.read()
        calls = CounterMetricFamily(
            f"{PREFIX}_api_calls",
            "Calls to the Message Batches API, by endpoint and HTTP status (no_answer: none came)",
            labels=["endpoint", "status"],
        )
        retries = CounterMetricFamily(
            f"{PREFIX}_api_retries", "API calls retried, by endpoint", labels=["endpoint"]
        )
        latency = HistogramMetricFamily(
            f"{PREFIX}_api_call_seconds",
            "Time to the API's answer (for a results stream, to its first byte), by endpoint",
            labels=["endpoint"],
        )
        routes = set()
        for field, value in sorted(counts.items()):
            kind, _, rest = field.partition("|")
            if kind == "calls":
                route, _, status = rest.rpartition("|")
                calls.add_metric([route, status], value)
            elif kind == "retries":
                retries.add_metric([rest], value)
            elif kind == "count":
                routes.add(rest)
        for route in sorted(routes):
            buckets = [
                (str(bound), counts.get(f"le|{route}|{bound}", 0.0)) for bound in call_stats.BUCKETS
            ]
            buckets.append(("+Inf", counts[f"count|{route}"]))
            latency.add_metric([route], buckets, counts.get(f"sum|{route}", 0.0))
        yield calls
        yield retries
        yield latency

    def _queue_length(self) -> Metric:
        queue = GaugeMetricFamily(
            f"{PREFIX}_celery_queue_length",
            "Tasks waiting in Celery's queue (-1: the broker did not answer)",
            labels=["queue"],
        )
        try:
            # The broker is the same Redis (CELERY_BROKER_URL is REDIS_URL).
            length = ratelimit.client().llen("celery")
        except Exception:  # the broker down is what this gauge is for: say so, do not fail
            length = -1
        queue.add_metric(["celery"], length)
        return queue

    def _audit_head(self) -> Iterator[Metric]:
        """The audit log's newest entry and its chain hash (batches.audit_chain): Prometheus keeps
        them outside the database, for `verifyaudit --expect-head ID:HASH`."""
        head = AuditEntry.objects.order_by("-id").values_list("id", "hash").first()
        newest = GaugeMetricFamily(
            f"{PREFIX}_audit_head_id",
            "Id of the audit log's newest entry (0: none). It never goes down: a drop means "
            "entries were removed",
        )
        newest.add_metric([], head[0] if head else 0)
        yield newest
        if head:
            info = InfoMetricFamily(
                f"{PREFIX}_audit_head", "The audit log's newest entry and its chain hash"
            )
            info.add_metric([], {"id": str(head[0]), "hash": head[1]})
            yield info
