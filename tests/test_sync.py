import json
import logging
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from batches import sync
from batches.api import ApiClient
from batches.models import Batch, Result, Workspace
from batches.workspaces import create_workspace
from emulator.faults import set_key_faults
from emulator.testing import BASE_URL, make_batch
from tests.mirror import KEY

pytestmark = pytest.mark.django_db


def ended_later(minutes=30):
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def sync_and_ingest(workspace_id):
    report = sync.sync_workspace(workspace_id)
    for batch_id in report.to_ingest:
        sync.ingest_results(batch_id)
    return report


def read_questions():
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "samples" / "questions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_it_mirrors_batches_created_through_the_sdk_after_one_sync(workspace, sdk):
    created = sdk.messages.batches.create(requests=read_questions())
    report = sync.sync_workspace(workspace.pk)
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
    sync.sync_workspace(workspace.pk)
    before = list(Batch.objects.values())
    report = sync.sync_workspace(workspace.pk)
    assert (report.created, report.updated) == (0, 0)
    assert list(Batch.objects.values()) == before


def test_an_ended_batch_is_updated_and_its_results_ingested(workspace, sdk):
    created = sdk.messages.batches.create(requests=read_questions())
    sync.sync_workspace(workspace.pk)
    with ended_later():
        report = sync.sync_workspace(workspace.pk)
        assert report.updated == 1
        assert len(report.to_ingest) == 1
        ingest = sync.ingest_results(report.to_ingest[0])
    batch = Batch.objects.get(api_id=created.id)
    assert batch.processing_status == "ended" and batch.succeeded == 4
    assert ingest.stored == 4 and not ingest.mismatch
    assert batch.results_ingested == 4 and batch.results_ingested_at
    result = Result.objects.get(batch=batch, custom_id=read_questions()[0]["custom_id"])
    assert result.result_type == "succeeded"
    assert result.answer_text and result.output_tokens > 0 and result.model


def test_three_batches_one_canceled_give_exactly_their_results(workspace, sdk):
    small = make_batch(KEY, 7, prefix="small", invalid_every=3)
    make_batch(KEY, 250, prefix="medium")
    large = make_batch(KEY, 3000, prefix="large")
    sdk.messages.batches.cancel(large.batch_id)
    with ended_later(minutes=60):
        sync_and_ingest(workspace.pk)
    assert Result.objects.count() == 3257
    by_batch = {b.api_id: b for b in Batch.objects.all()}
    assert by_batch[small.batch_id].errored == 2
    assert by_batch[large.batch_id].canceled > 0
    assert Result.objects.filter(result_type="errored", error_type="invalid_request_error").exists()
    for batch in by_batch.values():
        assert batch.results_ingested == batch.total
        assert batch.results_file.name.endswith(".jsonl.gz")
        assert not batch.ingest_mismatch


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


def test_results_cut_off_midway_are_fetched_again_and_counted_right(workspace):
    make_batch(KEY, 300)
    set_key_faults(KEY, cut_results=True)
    with ended_later():
        report = sync.sync_workspace(workspace.pk)
        first = sync.ingest_results(report.to_ingest[0])
    assert "cut off" in first.error or "broke off" in first.error
    batch = Batch.objects.get()
    assert batch.results_ingested_at is None and batch.ingest_error
    set_key_faults(KEY, cut_results=False)
    with ended_later(minutes=90):
        again = sync.sync_workspace(workspace.pk)
        assert again.to_ingest == [batch.pk]
        assert sync.ingest_results(batch.pk).stored == 300


def test_ingestion_killed_halfway_and_rerun_ends_with_the_same_numbers(
    workspace, monkeypatch, settings
):
    settings.INGEST_CHUNK_SIZE = 100
    make_batch(KEY, 450)
    calls = []
    real_store = sync._store_chunk

    def dying_store(batch, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise SystemExit("worker killed")
        real_store(batch, rows)

    monkeypatch.setattr(sync, "_store_chunk", dying_store)
    with ended_later():
        report = sync.sync_workspace(workspace.pk)
        with pytest.raises(SystemExit):
            sync.ingest_results(report.to_ingest[0])
    assert Result.objects.count() == 200
    # The dead run's lease holds the batch for a while, then lapses.
    with ended_later(minutes=31):
        assert sync.ingest_results(report.to_ingest[0]).skipped
    monkeypatch.setattr(sync, "_store_chunk", real_store)
    with ended_later(minutes=60):
        assert sync.ingest_results(report.to_ingest[0]).stored == 450
        assert sync.ingest_results(report.to_ingest[0]).skipped  # done: nothing to do twice
    assert Result.objects.count() == 450


def test_ingesting_twice_stores_nothing_twice(workspace):
    batch = make_batch(KEY, 20)
    with ended_later():
        sync.sync_workspace(workspace.pk)
        mirror = Batch.objects.get(api_id=batch.batch_id)
        assert sync.ingest_results(mirror.pk).stored == 20
        Batch.objects.filter(pk=mirror.pk).update(results_ingested_at=None)
        assert sync.ingest_results(mirror.pk).stored == 20
    assert Result.objects.count() == 20


def test_a_mismatch_between_counts_and_results_is_recorded(workspace):
    make_batch(KEY, 10)
    with ended_later():
        report = sync.sync_workspace(workspace.pk)
        Batch.objects.update(succeeded=11)  # the API counted one more than it gave
        ingest = sync.ingest_results(report.to_ingest[0])
    assert "Stored 10 results but the batch counts 11 requests" in ingest.mismatch
    assert Batch.objects.get().ingest_mismatch == ingest.mismatch


def test_a_workspace_with_a_bad_key_records_its_error_and_the_others_sync(workspace, user):
    broken = create_workspace("Broken", BASE_URL, "", members=[user])
    make_batch(KEY, 3)
    assert "authentication_error" in sync.sync_workspace(broken.pk).error
    assert not sync.sync_workspace(workspace.pk).error
    broken.refresh_from_db()
    assert "401" in broken.last_sync_error
    assert broken.sync_claimed_until is None
    assert Batch.objects.filter(workspace=workspace).count() == 1


def test_a_batch_that_answers_404_right_after_creation_is_retried_not_marked_gone(workspace):
    now = timezone.now()
    batch = Batch.objects.create(
        workspace=workspace,
        api_id="msgbatch_just_created",
        processing_status="in_progress",
        processing=5,
        created_at=now - timedelta(seconds=3),
        next_poll_at=now,
    )
    report = sync.sync_workspace(workspace.pk)
    batch.refresh_from_db()
    assert report.gone == 0 and batch.gone_at is None
    assert batch.first_not_found_at is not None
    with time_machine.travel(now + timedelta(minutes=5), tick=False):
        Workspace.objects.update(sync_claimed_until=None)
        assert sync.sync_workspace(workspace.pk).gone == 1
    batch.refresh_from_db()
    assert batch.gone_at is not None


def test_a_batch_deleted_elsewhere_is_marked_gone_and_keeps_its_results(workspace, sdk):
    emulated = make_batch(KEY, 12)
    with ended_later():
        sync_and_ingest(workspace.pk)
        sdk.messages.batches.delete(emulated.batch_id)
    with ended_later(minutes=60):
        report = sync.sync_workspace(workspace.pk)  # a full listing: the last one was long ago
    assert report.gone == 1
    batch = Batch.objects.get()
    assert batch.gone_at is not None
    assert Result.objects.filter(batch=batch).count() == 12


def test_two_syncs_of_the_same_workspace_cannot_both_claim_it(workspace):
    now = timezone.now()
    assert sync.claim_workspace(workspace.pk, now) is not None
    assert sync.claim_workspace(workspace.pk, now) is None
    assert sync.sync_workspace(workspace.pk).skipped
    # A crashed holder's claim lapses, and a late release by the old holder leaves the new
    # holder's claim alone.
    first = Workspace.objects.get().sync_claimed_until
    later = now + sync.claim_lease() + timedelta(seconds=1)
    second = sync.claim_workspace(workspace.pk, later)
    assert second is not None
    sync.release_workspace(workspace.pk, first)
    assert Workspace.objects.get().sync_claimed_until == second
    assert sync.claim_workspace(workspace.pk, later) is None


def test_two_ingestions_of_the_same_batch_cannot_both_claim_it(workspace):
    make_batch(KEY, 3)
    with ended_later():
        report = sync.sync_workspace(workspace.pk)
        now = timezone.now()
        assert sync.claim_batch_for_ingestion(report.to_ingest[0], now)
        assert not sync.claim_batch_for_ingestion(report.to_ingest[0], now)
        assert sync.ingest_results(report.to_ingest[0]).skipped


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


def test_refresh_now_during_an_ingestion_leaves_its_claim_alone(workspace):
    from batches import actions

    make_batch(KEY, 3)
    with ended_later():
        report = sync.sync_workspace(workspace.pk)
        batch_id = report.to_ingest[0]
        assert sync.claim_batch_for_ingestion(batch_id, timezone.now())
        actions.refresh_batch(Batch.objects.get(pk=batch_id))
        assert sync.claim_batch_for_ingestion(batch_id, timezone.now()) is None


def test_a_failed_ingestion_backs_off_and_refresh_lifts_the_backoff(workspace):
    from batches import actions

    make_batch(KEY, 30)
    set_key_faults(KEY, cut_results=True)
    with ended_later():
        batch_id = sync.sync_workspace(workspace.pk).to_ingest[0]
        assert sync.ingest_results(batch_id).error
        assert not Batch.objects.needing_ingestion(timezone.now()).exists()  # backing off
        actions.refresh_batch(Batch.objects.get(pk=batch_id))
        assert Batch.objects.needing_ingestion(timezone.now()).filter(pk=batch_id).exists()


def test_deleted_batches_are_marked_in_slices(workspace, sdk, monkeypatch):
    monkeypatch.setattr(sync, "ID_SLICE", 2)
    emulated = [make_batch(KEY, 1, prefix=f"d{n}") for n in range(5)]
    with ended_later():
        sync.sync_workspace(workspace.pk)
        for batch in emulated:
            sdk.messages.batches.delete(batch.batch_id)
    with ended_later(minutes=60):
        assert sync.sync_workspace(workspace.pk).gone == 5
    assert Batch.objects.filter(gone_at__isnull=False).count() == 5


def test_a_failing_model_list_does_not_stop_the_batches_syncing(workspace, monkeypatch):
    from batches.api import ApiClient, ApiError

    def broken(self):
        raise ApiError("models are down", status=500, error_type="api_error")

    monkeypatch.setattr(ApiClient, "list_models", broken)
    make_batch(KEY, 2)
    report = sync.sync_workspace(workspace.pk)
    assert not report.error and report.created == 1


def test_an_unexpected_error_while_storing_is_recorded_counted_and_released(workspace, monkeypatch):
    make_batch(KEY, 5)

    def broken(batch, rows):
        raise OSError("disk full")

    monkeypatch.setattr(sync, "_store_chunk", broken)
    with ended_later():
        batch_id = sync.sync_workspace(workspace.pk).to_ingest[0]
        report = sync.ingest_results(batch_id)
    batch = Batch.objects.get(pk=batch_id)
    assert "disk full" in report.error and "disk full" in batch.ingest_error
    assert batch.ingest_attempts == 1 and batch.ingest_claimed_until is None
    assert batch.ingest_not_before is not None
