"""Results ingestion: complete or not final, retried with backoff, resumed without duplicates."""

import json
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from batches import actions, ingestion, mirror
from batches.client import ApiClient
from batches.models import Batch, Result
from emulator.faults import set_key_faults
from emulator.testing import make_batch
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


def test_an_ended_batch_is_updated_and_its_results_ingested(workspace, sdk):
    created = sdk.messages.batches.create(requests=read_questions())
    mirror.sync_workspace(workspace.pk)
    with ended_later():
        report = mirror.sync_workspace(workspace.pk)
        assert report.updated == 1
        assert len(report.to_ingest) == 1
        ingest = ingestion.ingest_results(report.to_ingest[0])
    batch = Batch.objects.get(api_id=created.id)
    assert batch.processing_status == "ended" and batch.succeeded == 4
    assert ingest.stored == 4 and not ingest.error
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
        assert batch.results_file.name and batch.results_file.name.endswith(".jsonl.gz")
        assert batch.results_complete


def test_results_cut_off_midway_are_fetched_again_and_counted_right(workspace):
    make_batch(KEY, 300)
    set_key_faults(KEY, cut_results=True)
    with ended_later():
        report = mirror.sync_workspace(workspace.pk)
        first = ingestion.ingest_results(report.to_ingest[0])
    assert "is not a result" in first.error and "cut off" in first.error
    batch = Batch.objects.get()
    assert batch.results_ingested_at is None and batch.ingest_error
    set_key_faults(KEY, cut_results=False)
    with ended_later(minutes=90):
        again = mirror.sync_workspace(workspace.pk)
        assert again.to_ingest == [batch.pk]
        assert ingestion.ingest_results(batch.pk).stored == 300


def test_ingesting_twice_stores_nothing_twice(workspace):
    batch = make_batch(KEY, 20)
    with ended_later():
        mirror.sync_workspace(workspace.pk)
        stored = Batch.objects.get(api_id=batch.batch_id)
        assert ingestion.ingest_results(stored.pk).stored == 20
        Batch.objects.filter(pk=stored.pk).update(results_ingested_at=None)
        assert ingestion.ingest_results(stored.pk).stored == 20
    assert Result.objects.count() == 20


def test_a_failed_ingestion_backs_off_and_refresh_lifts_the_backoff(workspace):

    make_batch(KEY, 30)
    set_key_faults(KEY, cut_results=True)
    with ended_later():
        batch_id = mirror.sync_workspace(workspace.pk).to_ingest[0]
        assert ingestion.ingest_results(batch_id).error
        assert not Batch.objects.needing_ingestion(timezone.now()).exists()  # backing off
        assert Batch.objects.get(pk=batch_id).results_state == "retrying"
        refresh(batch_id)
        assert Batch.objects.needing_ingestion(timezone.now()).filter(pk=batch_id).exists()


def refresh(batch_id):
    """What "Refresh now" does: record the action, and run it as the worker would."""
    actions.request_action(Batch.objects.get(pk=batch_id), Batch.Action.REFRESH)
    return actions.run_action(batch_id)


def ended_batch(workspace, size=10, **faults):
    """A batch that ended half an hour ago, as the mirror knows it (call inside ended_later)."""
    with time_machine.travel(timezone.now() - timedelta(minutes=30), tick=False):
        make_batch(KEY, size)
    if faults:
        set_key_faults(KEY, **faults)
    return mirror.sync_workspace(workspace.pk).to_ingest[0]


def assert_not_final(batch_id, message):
    batch = Batch.objects.get(pk=batch_id)
    assert message in batch.ingest_error
    assert not batch.results_complete and not batch.results_file
    assert batch.ingest_attempts == 1
    assert batch.ingest_not_before is not None and batch.ingest_not_before > timezone.now()
    assert batch.results_state == "retrying"
    return batch


def test_a_stream_that_ends_cleanly_short_of_the_count_is_not_final_and_is_fetched_again(
    workspace,
):
    with ended_later():
        batch_id = ended_batch(workspace, 10, short_results=True)
        report = ingestion.ingest_results(batch_id)
        assert "ended after 5 of 10 results" in report.error
        assert_not_final(batch_id, "ended after 5 of 10 results")
        set_key_faults(KEY, short_results=False)
    with ended_later(minutes=60):  # past the backoff: the next tick fetches it again
        assert mirror.sync_workspace(workspace.pk).to_ingest == [batch_id]
        assert ingestion.ingest_results(batch_id).stored == 10
    assert Batch.objects.get(pk=batch_id).results_complete


def test_a_results_url_that_redirects_is_not_followed_nor_stored(workspace):
    with ended_later():
        batch_id = ended_batch(workspace, 4, redirect_results=True)
        report = ingestion.ingest_results(batch_id)
    assert "a redirect to https://files.example.invalid" in report.error
    assert_not_final(batch_id, "it was not followed")
    assert not Result.objects.exists()


def test_a_body_that_is_not_results_jsonl_is_a_failure(workspace):
    with ended_later():
        batch_id = ended_batch(workspace, 3)
        page = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>Sign in</html>"))
        with ApiClient.for_workspace(workspace, transport=page) as client:
            report = ingestion.ingest_results(batch_id, client=client)
    assert "Line 1 of the results is not a result" in report.error
    assert_not_final(batch_id, "not a result")


def test_more_counted_than_streamed_is_not_final(workspace):
    with ended_later():
        batch_id = ended_batch(workspace, 10)
        Batch.objects.update(succeeded=11)  # the API counted one more than it gave
        report = ingestion.ingest_results(batch_id)
    assert "ended after 10 of 11 results" in report.error
    assert_not_final(batch_id, "nothing of it is final")


def test_a_broken_stream_resumes_from_its_checkpoint_without_a_duplicate(workspace, settings):
    settings.INGEST_CHUNK_SIZE = 100
    with ended_later():
        batch_id = ended_batch(workspace, 450, cut_results=True)
        first = ingestion.ingest_results(batch_id)
        assert first.error
        batch = Batch.objects.get(pk=batch_id)
        assert batch.ingest_checkpoint_lines == 200  # two whole chunks before the cut
        assert Result.objects.count() == 200
        set_key_faults(KEY, cut_results=False)
        Batch.objects.update(ingest_not_before=None)
        again = ingestion.ingest_results(batch_id)
    assert again.resumed_from == 200 and again.stored == 450 and not again.error
    batch = Batch.objects.get(pk=batch_id)
    assert batch.results_complete and batch.ingest_checkpoint_lines == 0
    assert Result.objects.count() == 450


def test_a_checkpoint_of_other_lines_stores_them_all_again(workspace):
    with ended_later():
        batch_id = ended_batch(workspace, 30)
        # A checkpoint that does not match this stream's first lines (another order).
        Batch.objects.update(ingest_checkpoint_lines=10, ingest_checkpoint_digest="0" * 64)
        report = ingestion.ingest_results(batch_id)
    assert report.stored == 30 and report.resumed_from == 0


def test_an_unexpected_error_while_storing_is_recorded_counted_and_released(
    workspace, settings, tmp_path
):
    (tmp_path / "not-a-folder").write_text("a file where the storage's folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "foundations.storage.LocalFileStorage",
            "OPTIONS": {"location": str(tmp_path / "not-a-folder")},
        },
    }
    with ended_later():
        batch_id = ended_batch(workspace, 5)
        report = ingestion.ingest_results(batch_id)
    batch = Batch.objects.get(pk=batch_id)
    assert "Unexpected error while storing the results" in report.error
    assert batch.ingest_error == report.error and not batch.results_complete
    assert batch.ingest_attempts == 1 and batch.ingest_claimed_until is None
    assert batch.ingest_not_before is not None


def test_refresh_now_during_an_ingestion_leaves_its_claim_alone(workspace):
    from batches.claims import Claim

    with ended_later():
        batch_id = ended_batch(workspace, 3)
        held = Claim.take(Batch, batch_id, "ingest_claimed_until")
        assert held is not None
        assert refresh(batch_id).fetch_results
        assert Batch.objects.get(pk=batch_id).ingest_claimed_until == held.until
        assert ingestion.ingest_results(batch_id).skipped


def test_results_archived_before_they_were_stored_say_so(workspace):
    with ended_later():
        batch_id = ended_batch(workspace, 3)
    Batch.objects.update(archived_at=timezone.now())
    batch = Batch.objects.get(pk=batch_id)
    assert batch.results_state == "archived" and not batch.still_changing
    assert ingestion.ingest_results(batch_id).skipped


def test_a_temporary_file_a_killed_worker_left_is_removed(workspace, settings):
    from foundations.local_files import scratch_dir

    with ended_later():
        batch_id = ended_batch(workspace, 3)
        left = scratch_dir() / f"results-{batch_id}-abandoned.jsonl.gz"
        left.write_bytes(b"half a file")
        assert ingestion.ingest_results(batch_id).stored == 3
    assert not left.exists()
    assert not list(scratch_dir().glob(f"results-{batch_id}-*"))
