"""Time the flat CSV download of 100,000 results against PostgreSQL's COPY of the same columns.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_downloads.py

Creates a test database with one batch of 100,000 results (BENCH_RESULTS), analyzed, then, in
turn, `runs` times each (the argument, default 7):

- the anchor: `COPY (SELECT <the CSV's columns> ... ORDER BY custom_id) TO STDOUT CSV`, read to
  the end by psycopg in this process;
- the download: `GET .../download/results.csv` through Django's test client, its streamed body
  read chunk by chunk and thrown away.

Prints the medians in MB/s, the download's speed as a share of COPY's, and how much this
process's peak memory grew while downloading (the body is never held whole).
"""

import os
import resource
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, after django.setup()
    from django.contrib.auth.models import User

    from batches.models import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()

from django.db import connection  # noqa: E402
from django.http import StreamingHttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

SIZE = int(os.environ.get("BENCH_RESULTS", "100000"))
COLUMNS = (
    "custom_id, result_type, answer_text, stop_reason, model, input_tokens, output_tokens, "
    "cache_creation_input_tokens, cache_read_input_tokens, error_type, error_message"
)


def populate() -> "tuple[User, Batch]":
    from django.contrib.auth import get_user_model

    from batches import ingestion
    from batches.models import Batch, Result
    from batches.workspaces import create_workspace

    user = get_user_model().objects.create_user("bench")
    workspace = create_workspace("Bench", "https://api.example.test", "sk-ant-bench-000000",
                                 members=[user])  # fmt: skip
    now = timezone.now()
    batch = Batch.objects.create(
        workspace=workspace, api_id="msgbatch_bench", processing_status="ended",
        succeeded=SIZE - SIZE // 10, errored=SIZE // 10, created_at=now - timedelta(hours=1),
        ended_at=now, results_ingested=SIZE, results_ingested_at=now,
    )  # fmt: skip
    rows = []
    for n in range(SIZE):
        custom_id = f"req-{n:06d}"
        if n % 10 == 0:
            rows.append(Result(batch=batch, custom_id=custom_id, result_type="errored",
                               error_type="invalid_request_error",
                               error_message=f"max_tokens: too big in request {n}"))  # fmt: skip
        else:
            text = f"The answer to question {n} is {n * 7}, because that is what it gives."
            rows.append(Result(batch=batch, custom_id=custom_id, result_type="succeeded",
                               stop_reason="end_turn", model="claude-haiku-4-5",
                               input_tokens=24, output_tokens=18, answer_text=text,
                               content=[{"type": "text", "text": text}]))  # fmt: skip
        if len(rows) == 5000:
            Result.objects.bulk_create(rows)
            rows = []
    Result.objects.bulk_create(rows)
    ingestion.analyze_results()
    return user, batch


def copy_anchor(batch: "Batch") -> tuple[float, int]:
    query = (
        f"COPY (SELECT {COLUMNS} FROM batches_result WHERE batch_id = {int(batch.pk)} "  # noqa: S608
        "ORDER BY custom_id) TO STDOUT WITH (FORMAT csv)"
    )
    began = time.perf_counter()
    size = 0
    with connection.cursor() as cursor, cursor.copy(query) as copy:
        for block in copy:
            size += len(block)
    return time.perf_counter() - began, size


def download(client: Client, batch: "Batch") -> tuple[float, int]:
    began = time.perf_counter()
    response = client.get(f"{batch.get_absolute_url()}download/results.csv")
    assert isinstance(response, StreamingHttpResponse), response.status_code
    size = 0
    for chunk in response.streaming_content:
        size += len(chunk)
    response.close()
    return time.perf_counter() - began, size


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        user, batch = populate()
        client = Client()
        client.force_login(user)
        download(client, batch)  # warm up both
        copy_anchor(batch)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        anchor, ours = [], []
        for number in range(runs):
            took, copied = copy_anchor(batch)
            anchor.append(copied / took / 1e6)
            took, downloaded = download(client, batch)
            ours.append(downloaded / took / 1e6)
            print(f"run {number + 1}: COPY {anchor[-1]:.0f} MB/s ({copied / 1e6:.1f} MB), "
                  f"download {ours[-1]:.0f} MB/s ({downloaded / 1e6:.1f} MB)")  # fmt: skip
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        a, o = statistics.median(anchor), statistics.median(ours)
        print(f"medians on {connection.vendor}: COPY {a:.0f} MB/s, download {o:.0f} MB/s = "
              f"{100 * o / a:.0f}% of COPY; peak memory grew {grown:.0f} MB")  # fmt: skip
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
