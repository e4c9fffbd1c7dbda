"""Time the usage pages, and the batch list's search across batches, at 10,000 batches and
1,000,000 results, against Django's admin.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/bench_usage.py [runs]

Creates a test database with two workspaces of 5,000 batches each (BENCH_BATCHES in all), spread
over the last year and five people, and 100 results in each (BENCH_RESULTS in all: two models,
every tenth errored with one of two error types), stored with COPY as ingestion stores them.
Then works out every batch's totals and usage rows as ingestion does after a batch's results
are complete (timed), and, `runs` times (default 20), each usage page through Django's test
client as a logged-in member (server time: middleware, queries, templates), interleaved with the
anchor, the admin changelist of the same batches as a superuser.

Prints each page's median in ms, its ratio to the admin's median, and its query count.
BENCH_PROFILE=<page> prints that page's queries with their times, BENCH_EXPLAIN=<page> the plan
of its grouped query, BENCH_CPROFILE=<page> where its Python time goes.
"""

import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, after django.setup()
    from django.contrib.auth.models import User

    from batches.models import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

BATCHES = int(os.environ.get("BENCH_BATCHES", "10000"))
RESULTS = int(os.environ.get("BENCH_RESULTS", "1000000"))


def populate() -> "tuple[User, User, list[Workspace]]":
    from django.contrib.auth import get_user_model

    from batches import bulk, totals
    from batches.models import Batch, Result
    from batches.workspaces import create_workspace

    users = get_user_model().objects
    people = [users.create_user(f"person{n}") for n in range(5)]
    admin = users.create_superuser("bench-admin", password=None)  # force_login needs none
    workspaces = [
        create_workspace(
            name,
            "https://api.example.test",
            f"sk-ant-bench-usage-{n:04d}",
            members=[(people[0], "admin"), *people[1:], admin],
        )
        for n, name in enumerate(["Research", "Support"])
    ]
    workspaces[0].monthly_budget = Decimal("5000.00")
    workspaces[0].save()
    now = timezone.now()
    per_batch = RESULTS // BATCHES
    rows = []
    for n in range(BATCHES):
        created = now - timedelta(minutes=n * 525_600 // BATCHES)  # a year of batches
        rows.append(Batch(
            workspace=workspaces[n % 2], api_id=f"msgbatch_usage{n:06d}", name=f"Run {n}",
            processing_status="ended", succeeded=per_batch - per_batch // 10,
            errored=per_batch // 10, created_at=created, submitted_by=people[n % 5],
            expires_at=created + timedelta(hours=24),
            ended_at=created + timedelta(minutes=30 + n % 600),
            results_ingested=per_batch, results_ingested_at=now,
        ))  # fmt: skip
    Batch.objects.bulk_create(rows, batch_size=2000)
    ids = list(Batch.objects.order_by("pk").values_list("pk", flat=True))

    def results() -> Iterator[tuple[int, str, str, str, str, str, str, int, int, int, int, str]]:
        for batch_id in ids:
            for n in range(per_batch):
                if n % 10 == 0:
                    kind = "invalid_request_error" if n % 20 == 0 else "overloaded_error"
                    yield (batch_id, f"req-{n:04d}", "errored", kind, f"Problem {n}", "", "",
                           0, 0, 0, 0, "")  # fmt: skip
                else:
                    model = "claude-haiku-4-5" if n % 3 else "claude-sonnet-4-5"
                    yield (batch_id, f"req-{n:04d}", "succeeded", "", "", "end_turn", model,
                           120, 80, 0, 40 if n % 4 == 0 else 0, f"Answer {n}")  # fmt: skip

    began = time.perf_counter()
    fields = ["batch", "custom_id", "result_type", "error_type", "error_message", "stop_reason",
              "model",
              "input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens", "answer_text"]  # fmt: skip
    stored = bulk.insert_rows(Result, fields, results())
    print(f"{stored:,} results stored in {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    for start in range(0, len(ids), 500):
        totals.store_totals(Batch.objects.filter(pk__in=ids[start : start + 500]))
    spent = time.perf_counter() - began
    each = spent / len(ids) * 1000
    print(f"totals and usage rows of {len(ids):,} batches in {spent:.1f} s "
          f"({each:.1f} ms a batch, once after its results are stored)")  # fmt: skip
    from batches import search

    # Writing the search text of a million results takes minutes here (a task per batch in
    # production): BENCH_NO_SEARCH_INDEX=1 leaves it out (the answer-text search then finds none).
    if search.supported() and not os.environ.get("BENCH_NO_SEARCH_INDEX"):
        began = time.perf_counter()
        for batch_id in ids:
            search.index_results(batch_id)
        print(f"search text of {stored:,} results written in {time.perf_counter() - began:.1f} s")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    return people[0], admin, workspaces


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        member, admin, workspaces = populate()
        reader, anchor = Client(), Client()
        reader.force_login(member)
        anchor.force_login(admin)
        today = timezone.localdate()
        month = {"start": str(today - timedelta(days=29)), "end": str(today), "by": "day"}
        year = {"start": str(today - timedelta(days=364)), "end": str(today), "by": "month"}
        research = f"/w/{workspaces[0].slug}/usage/"
        pages: dict[str, tuple[str, dict[str, str]]] = {
            "usage, every workspace, 30 days by day": ("/usage/", month),
            "usage, every workspace, a year by month": ("/usage/", year),
            "usage, every workspace, a year by week": ("/usage/", {**year, "by": "week"}),
            "usage, one workspace and its budget": (research, month),
            "usage, one workspace, a year by month": (research, year),
            "usage CSV, by person over a year": ("/usage/", {**year, "csv": "people"}),
            # The batch list's search box, across batches: a custom_id every batch has, one
            # only one has, and words of answers within a workspace.
            "batch list, custom_id in 10,000 batches": ("/", {"q": "req-0042"}),
            "batch list, a custom_id nobody has": ("/", {"q": "req-9999"}),
            "one workspace's list, answer text": (f"/w/{workspaces[0].slug}/", {"q": "Answer 42"}),
        }
        timings: dict[str, list[float]] = {name: [] for name in ["admin changelist", *pages]}
        queries: dict[str, int] = {}
        for _ in range(runs):
            started = time.perf_counter()
            assert anchor.get("/admin/batches/batch/").status_code == 200
            timings["admin changelist"].append((time.perf_counter() - started) * 1000)
            for name, (url, params) in pages.items():
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = reader.get(url, params)
                    timings[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (name, response.status_code)
                queries[name] = len(captured)
        if profiled := os.environ.get("BENCH_PROFILE"):
            url, params = pages[profiled]
            with CaptureQueriesContext(connection) as captured:
                reader.get(url, params)
            for query in captured.captured_queries:
                print(f"{float(query['time']) * 1000:7.1f} ms  {query['sql'][:150]}")
        if profiled := os.environ.get("BENCH_EXPLAIN"):  # the plan of the page's grouped query
            url, params = pages[profiled]
            with CaptureQueriesContext(connection) as captured:
                reader.get(url, params)
            grouped = [
                query["sql"] for query in captured.captured_queries if "bucket" in query["sql"]
            ]
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN ANALYZE " + grouped[0])
                print("\n".join(row[0] for row in cursor.fetchall()))
        if profiled := os.environ.get("BENCH_CPROFILE"):
            import cProfile
            import pstats

            url, params = pages[profiled]
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(5):
                reader.get(url, params)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        admin_ms = statistics.median(timings["admin changelist"])
        print(f"{BATCHES:,} batches, {RESULTS:,} results on {connection.vendor}, {runs} runs")
        print(f"{'page':42} {'median ms':>10} {'of admin':>9} {'queries':>8}")
        for name, values in timings.items():
            ms = statistics.median(values)
            print(f"{name:42} {ms:10.1f} {ms / admin_ms:8.2f}x {queries.get(name, ''):>8}")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
