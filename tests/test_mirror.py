"""The mirror: listing, upserting, refreshing and noticing deleted batches, and the key's safety."""

import json
import logging
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from batches import ingestion, mirror
from batches.client import ApiClient
from batches.models import Batch, Result, Workspace
from batches.workspaces import create_workspace
from emulator.faults import set_key_faults
from emulator.testing import BASE_URL, CALLS, httpx_transport, make_batch
from tests import factories
from tests.mirror import KEY

pytestmark = pytest.mark.django_db


def ended_later(minutes=30):
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def sync_and_ingest(workspace_id):
    report = mirror.sync_workspace(workspace_id)
    for batch_id in report.to_ingest:
        ingestion.ingest_results(batch_id)
    return report


def read_questions():
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "samples" / "questions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_it_mirrors_batches_created_through_the_sdk_after_one_sync(workspace, sdk):
    created = sdk.messages.batches.create(requests=read_questions())
    report = mirror.sync_workspace(workspace.pk)
    assert report.created == 1 and not report.error
    batch = Batch.objects.get(workspace=workspace)
    assert batch.api_id == created.id
    assert batch.processing_status == "in_progress"
    assert batch.processing == 4 and batch.total == 4
    assert batch.created_outside
    assert batch.created_at == created.created_at
    workspace.refresh_from_db()
    assert workspace.last_synced_at and workspace.last_sync_error == ""


def test_a_second_sync_changes_nothing(workspace, sdk):
    sdk.messages.batches.create(requests=read_questions())
    mirror.sync_workspace(workspace.pk)
    before = list(Batch.objects.values())
    report = mirror.sync_workspace(workspace.pk)
    assert (report.created, report.updated) == (0, 0)
    assert list(Batch.objects.values()) == before


@pytest.mark.parametrize("fault", ["rate_429", "rate_500", "rate_529"])
def test_a_sync_under_faults_ends_with_the_same_numbers(workspace, fault):
    for size in (7, 250, 30):
        make_batch(KEY, size, prefix=f"b{size}")
    set_key_faults(KEY, **{fault: 0.5, "retry_after_seconds": 1})
    with ended_later():
        report = sync_and_ingest(workspace.pk)
    assert not report.error
    assert Batch.objects.count() == 3
    assert Result.objects.count() == 287


def test_a_workspace_with_a_bad_key_records_its_error_and_the_others_sync(workspace, user):
    broken = create_workspace("Broken", BASE_URL, "", members=[user])
    make_batch(KEY, 3)
    assert "authentication_error" in mirror.sync_workspace(broken.pk).error
    assert not mirror.sync_workspace(workspace.pk).error
    broken.refresh_from_db()
    assert "401" in broken.last_sync_error
    assert broken.sync_claimed_until is None
    assert Batch.objects.filter(workspace=workspace).count() == 1


def test_a_batch_that_answers_404_right_after_creation_is_retried_not_marked_gone(workspace):
    now = timezone.now()
    batch = factories.running_batch(
        workspace, processing=5, minutes_ago=0.05, api_id="msgbatch_just_created", next_poll_at=now
    )
    report = mirror.sync_workspace(workspace.pk)
    batch.refresh_from_db()
    assert report.gone == 0 and batch.gone_at is None
    assert batch.first_not_found_at is not None
    with time_machine.travel(now + timedelta(minutes=5), tick=False):
        Workspace.objects.update(sync_claimed_until=None)
        assert mirror.sync_workspace(workspace.pk).gone == 1
    batch.refresh_from_db()
    assert batch.gone_at is not None


def test_a_batch_deleted_elsewhere_is_marked_gone_and_keeps_its_results(workspace, sdk):
    emulated = make_batch(KEY, 12)
    with ended_later():
        sync_and_ingest(workspace.pk)
        sdk.messages.batches.delete(emulated.batch_id)
    with ended_later(minutes=60):
        report = mirror.sync_workspace(workspace.pk)  # a full listing: the last one was long ago
    assert report.gone == 1
    batch = Batch.objects.get()
    assert batch.gone_at is not None
    assert Result.objects.filter(batch=batch).count() == 12


def test_the_key_never_appears_in_plain_text_in_the_database_pages_or_logs(
    workspace, sdk, owner_client, admin_client, caplog
):
    caplog.set_level(logging.DEBUG)
    make_batch(KEY, 5)
    set_key_faults(KEY, rate_500=0.5)
    with ended_later():
        sync_and_ingest(workspace.pk)
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table.startswith("emulator_"):
                continue  # the emulator is the API's side of the wire
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from introspection)
            assert KEY not in repr(cursor.fetchall()), table
    batch = Batch.objects.get()
    pages = [
        "/",
        "/workspaces/",
        workspace.get_absolute_url(),
        batch.get_absolute_url(),
        f"/admin/batches/workspace/{workspace.pk}/change/",
        "/admin/batches/workspace/",
    ]
    for url in pages:
        client = admin_client if url.startswith("/admin") else owner_client
        html = client.get(url).content.decode()
        assert KEY not in html, url
    assert "sk-ant-...cdef" in owner_client.get("/workspaces/").content.decode()
    assert KEY not in caplog.text
    assert caplog.text  # the sync did log (its retries)


def test_the_stored_key_is_encrypted_and_survives_key_rotation(workspace, settings):
    from cryptography.fernet import Fernet

    from batches import crypto

    stored = Workspace.objects.get().api_key_encrypted
    assert KEY not in stored
    settings.FERNET_KEYS = [Fernet.generate_key().decode(), *settings.FERNET_KEYS]
    crypto._fernet.cache_clear()
    try:
        from django.core.management import call_command

        call_command("rotatekeys", stdout=open("/dev/null", "w"))  # noqa: SIM115
        rotated = Workspace.objects.get()
        assert rotated.api_key_encrypted != stored
        assert rotated.api_key == KEY
        settings.FERNET_KEYS = settings.FERNET_KEYS[:1]  # the old key can go
        crypto._fernet.cache_clear()
        assert Workspace.objects.get().api_key == KEY
    finally:
        crypto._fernet.cache_clear()


def test_the_client_lists_every_page_newest_first(workspace):
    for number in range(5):
        make_batch(KEY, 1, prefix=f"p{number}")
    with ApiClient.for_workspace(workspace) as client:
        pages = list(client.iter_batch_pages(limit=2))
    assert [len(page.data) for page in pages] == [2, 2, 1]
    ids = [item["id"] for page in pages for item in page.data]
    created = [item["created_at"] for page in pages for item in page.data]
    assert len(set(ids)) == 5 and created == sorted(created, reverse=True)


def test_two_syncs_of_the_same_workspace_cannot_both_claim_it(workspace):
    from batches.claims import Claim

    held = Claim.take(Workspace, workspace.pk, "sync_claimed_until")
    assert held is not None
    assert mirror.sync_workspace(workspace.pk).skipped
    held.release()
    assert not mirror.sync_workspace(workspace.pk).skipped


def test_deleted_batches_are_all_marked(workspace, sdk):
    emulated = [make_batch(KEY, 1, prefix=f"d{n}") for n in range(5)]
    with ended_later():
        mirror.sync_workspace(workspace.pk)
        for batch in emulated:
            sdk.messages.batches.delete(batch.batch_id)
    with ended_later(minutes=60):
        assert mirror.sync_workspace(workspace.pk).gone == 5
    assert Batch.objects.filter(gone_at__isnull=False).count() == 5


def test_a_failing_model_list_does_not_stop_the_batches_syncing(workspace):
    emulator = httpx_transport()

    def handler(request):
        if request.url.path.endswith("/v1/models"):
            body = {"type": "error", "error": {"type": "api_error", "message": "down"}}
            return httpx.Response(500, json=body)
        return emulator.handle_request(request)

    make_batch(KEY, 2)
    with ApiClient.for_workspace(workspace, transport=httpx.MockTransport(handler)) as client:
        report = mirror.sync_workspace(workspace.pk, client=client)
    assert not report.error and report.created == 1


def no_renewal_within(settings):
    """No keep-alive renewal of the sync's claim falls within a long sync of the test. The test's
    transaction holds SQLite's write lock, so the renewing thread (on a connection of its own)
    could only wait for it, and each sync's end would wait for that thread (10 s a sync, most of
    the test's time). These tests count API calls; tests/test_claims.py tests the renewals."""
    settings.CLAIM_LEASE_SECONDS, settings.CLAIM_RENEW_SECONDS = 7200.0, 3600.0


def test_a_tick_over_5000_batches_with_100_running_lists_instead_of_retrieving_each(
    workspace, settings, frozen_now
):
    from emulator.testing import fill_workspace

    settings.API_TRANSPORT = "emulator.testing.counting_transport"
    no_renewal_within(settings)
    running = fill_workspace(KEY, 5000, active_every=50)
    assert len(running) == 100
    mirror.sync_workspace(workspace.pk)  # the first sync lists everything
    assert Batch.objects.filter(workspace=workspace).count() == 5000
    CALLS.clear()
    frozen_now.shift(settings.SYNC_INTERVAL_SECONDS + 1)  # every running batch is due a look
    report = mirror.sync_workspace(workspace.pk)
    assert CALLS == ["/emulator/v1/messages/batches"] * 5, CALLS
    assert report.refreshed == 0 and report.listed == 5000
    polled = Batch.objects.filter(api_id__in=running).values_list("last_polled_at", flat=True)
    assert set(polled) <= {timezone.now()}


def test_a_tick_with_one_old_batch_running_retrieves_it_rather_than_list_to_the_end(
    workspace, settings, frozen_now
):
    from emulator.testing import fill_workspace

    settings.API_TRANSPORT = "emulator.testing.counting_transport"
    no_renewal_within(settings)
    fill_workspace(KEY, 3000, active_every=3000)  # one running, in the middle... of the oldest
    mirror.sync_workspace(workspace.pk)
    CALLS.clear()
    frozen_now.shift(settings.SYNC_INTERVAL_SECONDS + 1)
    report = mirror.sync_workspace(workspace.pk)
    assert len(CALLS) == 2 and report.refreshed == 1, CALLS
