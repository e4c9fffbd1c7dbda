"""Time every page a team reads at 10,000 batches and 100,000 results, against Django's admin.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/bench_pages.py [runs]

Creates a test database with one workspace of 10,000 batches (BENCH_BATCHES, a few still
running) and, in one of them, 100,000 results (BENCH_RESULTS), analyzed as ingestion leaves them.
Then, `runs` times (default 50), each page in turn through Django's test client as a logged-in
member (server time: middleware, queries, templates), interleaved with the anchor, the admin
changelist of the same batches as a superuser. Polls are timed twice: as a first poll (rendered)
and with the fingerprint they were last given (the 204 path).

Prints each page's median in ms, its ratio to the admin's median, and its query count.
"""

import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, after django.setup()
    from django.contrib.auth.models import User

    from batches.models import Batch, Workspace

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
RESULTS = int(os.environ.get("BENCH_RESULTS", "100000"))
HX = {"HX-Request": "true"}


def populate() -> "tuple[User, User, Workspace, Batch]":
    from django.contrib.auth import get_user_model

    from batches import ingestion
    from batches.models import Batch
    from batches.workspaces import create_workspace
    from bench.data import fill_batches, fill_results

    users = get_user_model().objects
    member = users.create_user("bench")
    admin = users.create_superuser("bench-admin", password=None)  # force_login needs none
    workspace = create_workspace("Bench", "https://api.example.test", "sk-ant-bench-pages-0000",
                                 members=[member, admin])  # fmt: skip
    fill_batches(workspace, BATCHES)
    now = timezone.now()
    big = Batch.objects.get(api_id=f"msgbatch_bench{BATCHES - 2:06d}")
    Batch.objects.filter(pk=big.pk).update(
        succeeded=RESULTS - RESULTS // 10, errored=RESULTS // 10,
        results_ingested=RESULTS, results_ingested_at=now, results_url="https://api.example.test/r",
    )  # fmt: skip
    fill_results(big, RESULTS)
    ingestion.analyze_results()
    from batches import search

    began = time.perf_counter()
    indexed = search.index_results(big.pk)
    print(f"search index of {indexed:,} results written in {time.perf_counter() - began:.1f} s "
          "(a task of its own after ingestion)")  # fmt: skip
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    big.refresh_from_db()
    return member, admin, workspace, big


def fingerprint(body: str) -> str:
    found = re.search(r'hx-vals=\'\{"v": "([^"]*)"\}\'', body)
    return found.group(1) if found else ""


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        member, admin, workspace, big = populate()
        reader, anchor = Client(), Client()
        reader.force_login(member)
        anchor.force_login(admin)
        detail = big.get_absolute_url()
        results = f"{detail}results/"
        last_page = (BATCHES + 49) // 50
        list_v = fingerprint(reader.get("/", headers=HX).content.decode())
        detail_v = fingerprint(reader.get(detail, headers=HX).content.decode())
        header_v = fingerprint(reader.get("/poll/").content.decode())
        pages: dict[str, tuple[str, dict, dict]] = {
            "batch list": ("/", {}, {}),
            "batch list, last page": ("/", {"page": last_page}, {}),
            "batch list, search": ("/", {"q": "Nightly run 5000"}, {}),
            "one workspace's list": (workspace.get_absolute_url(), {}, {}),
            "the workspaces page": ("/workspaces/", {}, {}),
            "batch detail": (detail, {}, {}),
            "results explorer, first page": (results, {}, {}),
            "results explorer, deep page": (results, {"after": "req-090000"}, {}),
            "results, errored only": (results, {"type": "errored"}, HX),
            "results, text search": (results, {"q": "number 99999:"}, HX),
            "results, text search, many hits": (results, {"q": "quick brown"}, HX),
            "one result": (f"{results}req-050001/", {}, {}),
            "list poll, rendered": ("/", {}, HX),
            "list poll, 204": ("/", {"v": list_v}, HX),
            "batch poll, 204": (detail, {"v": detail_v}, HX),
            "header poll, rendered": ("/poll/", {}, {}),
            "header poll, 204": ("/poll/", {"v": header_v}, HX),
        }
        timings: dict[str, list[float]] = {name: [] for name in ["admin changelist", *pages]}
        queries: dict[str, int] = {}
        for _ in range(runs):
            started = time.perf_counter()
            assert anchor.get("/admin/batches/batch/").status_code == 200
            timings["admin changelist"].append((time.perf_counter() - started) * 1000)
            for name, (url, params, headers) in pages.items():
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = reader.get(url, params, headers=headers)
                    timings[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code in (200, 204, 286), (name, response.status_code)
                queries[name] = len(captured)
        if profiled := os.environ.get("BENCH_PROFILE"):
            url, params, headers = pages[profiled]
            with CaptureQueriesContext(connection) as captured:
                reader.get(url, params, headers=headers)
            for query in captured.captured_queries:
                print(f"{float(query['time']) * 1000:7.1f} ms  {query['sql'][:150]}")
        if profiled := os.environ.get("BENCH_CPROFILE"):
            import cProfile
            import pstats

            url, params, headers = pages[profiled]
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(10):
                reader.get(url, params, headers=headers)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        admin_ms = statistics.median(timings["admin changelist"])
        print(f"{BATCHES:,} batches, {RESULTS:,} results on {connection.vendor}, {runs} runs")
        print(f"{'page':34} {'median ms':>10} {'of admin':>9} {'queries':>8}")
        for name, values in timings.items():
            ms = statistics.median(values)
            print(f"{name:34} {ms:10.1f} {ms / admin_ms:8.2f}x {queries.get(name, ''):>8}")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
