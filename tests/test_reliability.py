"""Reliability with real processes: Celery workers (killed with SIGKILL on purpose), the emulator
over HTTP, the database, Redis and an S3 server. Results are final only when complete, work whose
worker died is picked up within a minute without a duplicate, and faults change no count.

A thread stands in for the beat, asking every second for what the beat asks every few seconds
(a sync of every workspace, checks and actions to resume).
"""

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from batches import actions, submissions, tasks
from batches.models import Batch, Result, Submission
from batches.workspaces import create_workspace
from dashboard.celery import app
from emulator.faults import set_key_faults
from emulator.testing import make_batch
from tests.processes import shared_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
RECOVERY_LIMIT = 60.0


class Beat(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self):
        try:
            while not self.stopping.wait(1.0):
                tasks.sync_all_workspaces.delay()
                tasks.resume_checks.delay()
                tasks.resume_actions.delay()
        finally:
            connection.close()


class Workers:
    """Celery workers in processes of their own, on the test database, broker and bucket."""

    def __init__(self, tmp_path: Path, bucket):
        self.env = {
            **{name: value for name, value in os.environ.items() if name != "TEST_MEDIA_ROOT"},
            **bucket.environment(),
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "DATABASE_URL": shared_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": settings.SECRET_KEY,
            "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
            "VAR_DIR": str(tmp_path / "worker-var"),
            "LOG_LEVEL": "INFO",
        }
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--concurrency=1",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", f"--hostname={name}@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL to the worker and its pool: no shutdown, no cleanup, as a crash."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.tmp_path.glob("*.log"))


@pytest.fixture
def workers(transactional_db, tmp_path, bucket, object_storage, settings):
    # On transactional_db so the workers stop (finishing what they run, such as the search
    # index task that follows ingestion) before the test database is flushed.
    settings.EMULATOR_BASE_SECONDS = 0.0
    settings.EMULATOR_SECONDS_PER_REQUEST = 0.0
    app.control.purge()
    running = Workers(tmp_path, bucket)
    beat = Beat()
    beat.start()
    yield running
    beat.stopping.set()
    beat.join(timeout=10)
    running.stop()
    app.control.purge()


def workspace_on(live_server, key, user):
    return create_workspace("Reliable", f"{live_server.url}/emulator", key, members=[user])


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def test_a_worker_killed_mid_ingestion_is_replaced_within_a_minute_with_an_exact_count(
    workers, live_server, user, tmp_path
):
    workspace_on(live_server, "sk-ant-reliable-kill-1", user)
    emulated = make_batch("sk-ant-reliable-kill-1", 100_000, prefix="big")
    first = workers.start("first")
    batch = wait_for(
        lambda: Batch.objects.filter(api_id=emulated.batch_id).first(), 60, "the mirror"
    )
    wait_for(lambda: Result.objects.filter(batch=batch).count() > 15_000, 120, "ingestion")
    workers.kill(first)
    killed_at = time.monotonic()
    stored_when_killed = Result.objects.filter(batch=batch).count()
    checkpoint = Batch.objects.get(pk=batch.pk).ingest_checkpoint_lines
    assert 0 < stored_when_killed < 100_000 and checkpoint > 0
    workers.start("second")
    wait_for(
        lambda: Batch.objects.filter(pk=batch.pk, results_ingested_at__isnull=False).exists(),
        RECOVERY_LIMIT + 60,
        "the second worker's ingestion",
    )
    batch.refresh_from_db()
    recovered_in = time.monotonic() - killed_at
    print(f"\nkilled at {stored_when_killed:,} results stored (checkpoint {checkpoint:,}); all "
          f"100,000 stored {recovered_in:.0f} s after the kill")  # fmt: skip
    assert batch.results_ingested == 100_000 and not batch.ingest_error
    assert Result.objects.filter(batch=batch).count() == 100_000
    # The second worker skipped storing what the first had stored.
    assert "resumed from line" in workers.logs()
    assert recovered_in < RECOVERY_LIMIT + 30  # taken over within the lease, then finished
    leftovers = list((tmp_path / "worker-var" / "tmp").glob(f"results-{batch.pk}-*"))
    assert leftovers == [], leftovers


def _big_gzip_upload(count: int) -> SimpleUploadedFile:
    lines = (
        json.dumps({"custom_id": f"r{n}", "params": {"model": "claude-haiku-4-5",
                    "max_tokens": 8, "messages": [{"role": "user", "content": f"Q{n}"}]}})
        for n in range(count)
    )  # fmt: skip
    return SimpleUploadedFile("many.jsonl.gz", gzip.compress(("\n".join(lines)).encode(), 1))


def test_a_check_whose_worker_was_killed_is_picked_up_again_by_itself(workers, live_server, user):
    workspace = workspace_on(live_server, "sk-ant-reliable-check-1", user)
    submission = submissions.create_submission(workspace, user, _big_gzip_upload(600_000))
    first = workers.start("checker")
    tasks.check_submission.delay(submission.pk)
    wait_for(
        lambda: Submission.objects.filter(pk=submission.pk, check_lines__gt=0).exists(),
        60,
        "the check's first progress",
    )
    workers.kill(first)
    killed_at = time.monotonic()
    assert Submission.objects.get(pk=submission.pk).state == Submission.State.CHECKING
    workers.start("second-checker")
    wait_for(
        lambda: Submission.objects.filter(pk=submission.pk, state="ready").exists(),
        RECOVERY_LIMIT + 60,
        "the check, resumed",
    )
    submission.refresh_from_db()
    print(f"\nthe killed check was finished by another worker {time.monotonic() - killed_at:.0f} "
          "s after the kill")  # fmt: skip
    assert submission.request_count == 600_000 and submission.check_attempts == 2


def test_a_sync_under_mixed_faults_stores_exactly_every_result(workers, live_server, user):
    key = "sk-ant-reliable-mixed-1"
    workspace = workspace_on(live_server, key, user)
    for number in range(12):
        make_batch(key, 400, prefix=f"b{number}")
    set_key_faults(key, rate_429=0.1, rate_500=0.1, rate_529=0.1, retry_after_seconds=0)
    workers.start("mixed")
    wait_for(
        lambda: (
            Batch.objects.filter(workspace=workspace, results_ingested_at__isnull=False).count()
            == 12
        ),
        120,
        "every batch stored",
    )
    assert Result.objects.filter(batch__workspace=workspace).count() == 12 * 400
    assert Batch.objects.filter(workspace=workspace).count() == 12
    logs = workers.logs()
    assert "429" in logs and "500" in logs and "529" in logs  # every fault was met on the way


@pytest.mark.parametrize(
    ("fault", "said"), [("short_results", "ended after 5 of 10"), ("redirect_results", "redirect")]
)
def test_short_and_redirected_results_are_retried_until_complete(
    workers, live_server, user, fault, said
):
    key = f"sk-ant-reliable-{fault.replace('_', '-')}"
    workspace = workspace_on(live_server, key, user)
    set_key_faults(key, **{fault: True})
    emulated = make_batch(key, 10)
    workers.start(fault)
    batch = wait_for(
        lambda: Batch.objects.filter(api_id=emulated.batch_id).exclude(ingest_error="").first(),
        60,
        "a failed fetch, recorded",
    )
    assert said in batch.ingest_error and not batch.results_complete
    assert batch.results_state == "retrying"
    set_key_faults(key, **{fault: False})
    # "Refresh now" lifts the backoff: the results are fetched again at once, complete.
    actions.request_action(batch, Batch.Action.REFRESH)
    tasks.run_batch_action.delay(batch.pk)
    wait_for(
        lambda: Batch.objects.filter(pk=batch.pk, results_ingested_at__isnull=False).exists(),
        60,
        "the complete results",
    )
    assert Result.objects.filter(batch=batch).count() == 10
    assert workspace.batches.get().ingest_error == ""
