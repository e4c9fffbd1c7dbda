"""Time the results explorer's queries on one batch of 100,000 results.

    .venv/bin/python bench/bench_results_explorer.py            # SQLite (a throwaway file)
    DATABASE_URL=postgres://... .venv/bin/python bench/bench_results_explorer.py

Creates a test database, 100,000 Result rows (10% errored in two error types, a few stop reasons),
then renders the explorer through the test client: the first page, a page deep in the keyset, each
filter, and a text search; prints the median of several runs per query in milliseconds.
"""

import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

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

SIZE = int(os.environ.get("BENCH_RESULTS", "100000"))
RUNS = 7


def main() -> None:
    from django.contrib.auth import get_user_model

    from batches.models import Batch
    from batches.workspaces import create_workspace
    from bench.data import fill_results

    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        user = get_user_model().objects.create_user("bench")
        workspace = create_workspace("Bench", "https://api.example.test", "sk-ant-bench-0000",
                                     members=[user])  # fmt: skip
        now = timezone.now()
        batch = Batch.objects.create(
            workspace=workspace, api_id="msgbatch_bench", processing_status="ended",
            succeeded=SIZE - SIZE // 10, errored=SIZE // 10, created_at=now - timedelta(hours=1),
            ended_at=now, results_ingested=SIZE, results_ingested_at=now,
        )  # fmt: skip
        started = time.perf_counter()
        fill_results(batch, SIZE)
        print(f"{connection.vendor}: created {SIZE:,} results in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip

        client = Client()
        client.force_login(user)
        base = batch.get_absolute_url() + "results/"
        cases = [
            ("first page (full page, with facet counts)", {}, {}),
            ("first page (HTMX fragment)", {}, {"HX-Request": "true"}),
            ("page after req-090000", {"after": "req-090000"}, {"HX-Request": "true"}),
            ("before req-050000", {"before": "req-050000"}, {"HX-Request": "true"}),
            ("type=errored", {"type": "errored"}, {"HX-Request": "true"}),
            ("error_type=overloaded_error", {"error_type": "overloaded_error"},
             {"HX-Request": "true"}),
            ("stop_reason=max_tokens", {"stop_reason": "max_tokens"}, {"HX-Request": "true"}),
            ("search custom_id 'req-09999'", {"q": "req-09999"}, {"HX-Request": "true"}),
            ("search answer 'number 99999:'", {"q": "number 99999:"}, {"HX-Request": "true"}),
            ("search with no match", {"q": "no such text"}, {"HX-Request": "true"}),
            ("one result", None, {}),
        ]  # fmt: skip
        print(f"{'query':45} {'median ms':>10} {'queries':>8}")
        for label, params, headers in cases:
            timings = []
            for _ in range(RUNS):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    if params is None:
                        response = client.get(base + "req-050001/")
                    else:
                        response = client.get(base, params, headers=headers)
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            print(f"{label:45} {statistics.median(timings):10.1f} {len(queries):8d}")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
