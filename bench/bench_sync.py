"""Count and time the API calls of one incremental sync of a large workspace.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_sync.py [runs]

Creates a test database and an emulated workspace of 5,000 batches (BENCH_BATCHES), 100 of them
still running and spread through the list, mirrors it once (the first sync lists everything),
then `runs` times (default 5): makes every running batch due a look, as SYNC_INTERVAL_SECONDS
later, and runs one sync, counting the calls it sends and timing it. The emulator answers in this
process, through the client's transport seam, so the times are the dashboard's and the
emulator's work without a network.

Prints each run, the median calls and seconds per sync, and the calls a minute that syncs alone
make at the default interval.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()  # the in-process emulator answers as "testserver"

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

SIZE = int(os.environ.get("BENCH_BATCHES", "5000"))
KEY = "sk-ant-bench-sync-000000"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    settings.API_TRANSPORT = "emulator.testing.counting_transport"
    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        from batches import mirror
        from batches.models import Batch
        from batches.workspaces import create_workspace
        from emulator.testing import BASE_URL, CALLS, fill_workspace

        workspace = create_workspace("Bench", BASE_URL, KEY)
        running = fill_workspace(KEY, SIZE, active_every=SIZE // 100)
        mirror.sync_workspace(workspace.pk)
        print(f"{Batch.objects.count()} batches mirrored, {len(running)} running")
        calls, seconds = [], []
        for number in range(runs):
            Batch.objects.filter(api_id__in=running).update(next_poll_at=timezone.now())
            CALLS.clear()
            began = time.perf_counter()
            report = mirror.sync_workspace(workspace.pk)
            seconds.append(time.perf_counter() - began)
            calls.append(len(CALLS))
            print(f"run {number + 1}: {len(CALLS)} calls in {seconds[-1]:.2f} s ({report})")
        per_sync = statistics.median(calls)
        per_minute = per_sync * 60 / settings.SYNC_INTERVAL_SECONDS
        print(f"medians: {per_sync:.0f} calls a sync, {statistics.median(seconds):.2f} s; "
              f"{per_minute:.0f} calls a minute at SYNC_INTERVAL_SECONDS="
              f"{settings.SYNC_INTERVAL_SECONDS:.0f} (limit {50} a minute by default)")  # fmt: skip
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
