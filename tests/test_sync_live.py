"""The mirror over real HTTP, with real concurrency: threads, a Celery worker and beat."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone

from batches import ingestion, mirror, search
from batches.models import Batch, Result
from batches.workspaces import create_workspace
from dashboard.celery import app
from emulator.faults import set_key_faults
from emulator.testing import make_batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

KEY = "sk-ant-test-live-0123456789abcdef"


@pytest.fixture
def live_workspace(live_server, user):
    return create_workspace("Live", f"{live_server.url}/emulator", KEY, members=[user])


def test_two_syncs_started_at_once_store_nothing_twice(live_workspace):
    for size in (5, 40, 300):
        make_batch(KEY, size, prefix=f"b{size}")
    # Slow answers make the two syncs overlap for certain, so the claim is what keeps them apart.
    set_key_faults(KEY, latency_seconds=0.3)
    reports, errors = [], []
    barrier = threading.Barrier(2)

    def run():
        from django.db import connection

        try:
            barrier.wait()
            reports.append(mirror.sync_workspace(live_workspace.pk))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    with time_machine.travel(timezone.now() + timedelta(minutes=30), tick=False):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        assert sorted(report.skipped for report in reports) == [False, True]
        set_key_faults(KEY, latency_seconds=0)
        # Two ingestions of each batch at once: one claims it, the other skips.
        batch_ids = list(Batch.objects.values_list("pk", flat=True))
        outcomes = []

        def ingest(batch_id):
            from django.db import connection

            try:
                outcomes.append(ingestion.ingest_results(batch_id))
            finally:
                connection.close()

        threads = [threading.Thread(target=ingest, args=(pk,)) for pk in batch_ids * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert Batch.objects.count() == 3
    assert Result.objects.count() == 345
    assert sum(1 for outcome in outcomes if not outcome.skipped) == 3


def test_the_celery_worker_and_beat_keep_the_mirror_current(live_workspace, tmp_path):
    """The real thing: beat ticks every second, a worker syncs and ingests over HTTP."""
    from emulator.testing import sdk_client  # noqa: F401  (the SDK is the 'outside' tool)

    emulated = make_batch(KEY, 5)
    app.control.purge()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SYNC_INTERVAL_SECONDS": "1",
    }
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "beat", "--loglevel=WARNING",
         f"--schedule={tmp_path / 'beat-schedule'}"],
        cwd=settings.BASE_DIR, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with start_worker(app, perform_ping_check=False, pool="threads", concurrency=2,
                          loglevel="WARNING", shutdown_timeout=30):  # fmt: skip
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                batch = Batch.objects.filter(api_id=emulated.batch_id).first()
                # Ingested and indexed for search (a task of its own that follows ingestion): no
                # worker thread may still be writing when the test database is flushed.
                if (
                    batch
                    and batch.results_ingested_at
                    and (not search.supported() or search.is_indexed(batch))
                ):
                    break
                time.sleep(0.5)
    finally:
        beat.terminate()
        beat.wait(timeout=20)
    batch = Batch.objects.get(api_id=emulated.batch_id)
    assert beat.stdout is not None
    assert batch.processing_status == "ended", beat.stdout.read().decode()[-2000:]
    assert batch.results_ingested == 5
    assert Result.objects.filter(batch=batch, result_type="succeeded").count() == 5
