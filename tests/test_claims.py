"""Claims: taken by one holder at a time, renewed while the work progresses, released only by
their holder, free again one lease after a holder stops."""

import time
from datetime import datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from batches.claims import Claim
from batches.models import Workspace

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def row(db, user):
    return Workspace.objects.create(name="W", slug="w", base_url="https://api.example.test")


def test_one_holder_at_a_time_and_a_lapsed_claim_is_free(row, settings):
    settings.CLAIM_LEASE_SECONDS = 20
    first = Claim.take(Workspace, row.pk, "sync_claimed_until")
    assert first is not None
    assert Claim.take(Workspace, row.pk, "sync_claimed_until") is None
    with time_machine.travel(timezone.now() + timedelta(seconds=21), tick=False):
        second = Claim.take(Workspace, row.pk, "sync_claimed_until")
        assert second is not None
        # The first holder, late, can neither renew nor release the second's claim.
        assert not first.renew() and not first.release()
        assert Workspace.objects.get().sync_claimed_until == second.until
        assert second.release(last_sync_error="")
    assert Workspace.objects.get().sync_claimed_until is None


def _claimed_until() -> datetime:
    """When the row's claim lapses (or lapsed: the field keeps the time after it passed)."""
    until = Workspace.objects.get().sync_claimed_until
    assert until is not None
    return until


def test_renewing_moves_the_lease_and_writes_fields_with_it(row):
    claim = Claim.take(Workspace, row.pk, "sync_claimed_until")
    assert claim is not None
    before = claim.until
    assert claim.renew(last_sync_error="half way")
    stored = Workspace.objects.get()
    assert stored.sync_claimed_until == claim.until > before
    assert stored.last_sync_error == "half way"


def wait_for(condition, what: str, timeout: float = 10) -> None:
    """Polls `condition` until it holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.01)


def test_a_claim_kept_alive_outlives_its_lease_while_the_work_progresses(row, settings, caplog):
    settings.CLAIM_LEASE_SECONDS = 0.6
    settings.CLAIM_RENEW_SECONDS = 0.1
    settings.CLAIM_STALL_SECONDS = 0.5
    claim = Claim.take(Workspace, row.pk, "sync_claimed_until")
    assert claim is not None
    twice_the_lease = claim.until + timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    with claim.kept_alive():
        # The work progresses until it has held the claim for more than twice its lease; at each
        # step the holder renews, then waits for the thread's next renewal.
        while timezone.now() < twice_the_lease:
            claim.progressed()
            assert claim.renew()  # the holder's own renewals never collide with the thread's
            ours = claim.until
            wait_for(lambda ours=ours: claim.until != ours, "the keep-alive thread to renew")
        assert _claimed_until() > timezone.now()
        # No progress: the thread stops renewing, and the claim lapses within a lease.
        wait_for(lambda: "made no progress" in caplog.text, "the keep-alive thread to give up")
        wait_for(
            lambda: _claimed_until() < timezone.now(),
            "the claim to lapse",
            timeout=settings.CLAIM_LEASE_SECONDS + 5,
        )
        assert Claim.take(Workspace, row.pk, "sync_claimed_until") is not None


def test_the_scratch_sweep_removes_only_what_no_live_task_can_still_write(settings, tmp_path):
    import os

    from foundations.local_files import scratch_dir
    from foundations.storage import sweep_scratch

    settings.VAR_DIR = tmp_path
    old, fresh = scratch_dir() / "check-old.body", scratch_dir() / "results-1-fresh.jsonl.gz"
    old.write_bytes(b"left by a killed worker")
    fresh.write_bytes(b"being written now")
    an_hour_ago = time.time() - settings.CELERY_TASK_TIME_LIMIT - 120
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert sweep_scratch() == 1
    assert not old.exists() and fresh.exists()
