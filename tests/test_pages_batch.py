"""One batch's page: what it shows, how it polls, and its actions (against the emulator)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from batches import mirror
from batches.models import Batch
from emulator.testing import make_batch
from tests import factories
from tests.helpers import run_actions
from tests.mirror import KEY
from tests.polls import fingerprint_of

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def url(batch, suffix=""):
    return f"{batch.get_absolute_url()}{suffix}"


def test_the_batch_page_shows_timeline_cost_and_errors(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace))
    html = owner_client.get(url(batch)).content.decode()
    for text in ("Timeline", "Results downloadable from the API until", "Actual cost",
                 "Errors by type", "invalid_request_error", "needs a fix", "req-0003",
                 "Created outside the dashboard", "Results CSV"):  # fmt: skip
        assert text in html, text
    fragment = owner_client.get(url(batch), **HX)
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()


def test_the_batch_page_says_why_a_failed_fetch_is_not_final(owner_client, workspace):
    batch = factories.batch(
        workspace,
        results_url="https://api.example/results",
        ingest_attempts=1,
        ingest_error="The results stream ended after 3 of 4 results, so nothing of it is final.",
        ingest_not_before=timezone.now() + timedelta(minutes=1),
    )
    html = owner_client.get(batch.get_absolute_url()).content.decode()
    for text in (batch.api_id, "Succeeded", "Errored", "Expires",
                 "nothing of that attempt is final", "ended after 3 of 4"):  # fmt: skip
        assert text in html, text


def test_the_batch_fragment_polls_while_running(owner_client, workspace):
    batch = factories.running_batch(workspace)
    fragment = owner_client.get(url(batch), **HX)
    assert fragment.status_code == 200 and "every 3s" in fragment.content.decode()
    assert "Cancel batch" in fragment.content.decode()


def test_the_batch_poll_answers_204_until_a_count_changes(owner_client, workspace, frozen_now):
    batch = factories.running_batch(workspace, processing=4)
    seen = fingerprint_of(owner_client.get(url(batch)).content.decode())
    assert owner_client.get(url(batch), {"v": seen}, **HX).status_code == 204
    Batch.objects.filter(pk=batch.pk).update(processing=3, succeeded=1)
    changed = owner_client.get(url(batch), {"v": seen}, **HX)
    assert changed.status_code == 200 and "1 of 4 done" in changed.content.decode()
    Batch.objects.filter(pk=batch.pk).update(processing_status="ended", ended_at=timezone.now())
    ended = owner_client.get(url(batch), {"v": fingerprint_of(changed.content.decode())}, **HX)
    # An ended batch's page keeps watching (it may be deleted or refreshed from another page).
    assert ended.status_code == 200 and "every 3s" in ended.content.decode()
    settled = fingerprint_of(ended.content.decode())
    assert owner_client.get(url(batch), {"v": settled}, **HX).status_code == 204
    Batch.objects.filter(pk=batch.pk).update(gone_at=timezone.now())
    gone = owner_client.get(url(batch), {"v": settled}, **HX)
    assert gone.status_code == 200 and "was deleted from the API" in gone.content.decode()


def test_the_batch_page_says_when_a_failed_fetch_is_tried_again(
    owner_client, workspace, frozen_now
):
    batch = factories.batch(workspace, results_url="https://api.example/results",
                            ingest_attempts=3, ingest_error="The API answered 500.",
                            ingest_not_before=timezone.now() + timedelta(minutes=10))  # fmt: skip
    fragment = owner_client.get(url(batch), **HX)
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "The API answered 500." in body and "Refresh now" in body
    Batch.objects.filter(pk=batch.pk).update(ingest_not_before=None, ingest_error="")
    after = owner_client.get(url(batch), {"v": fingerprint_of(body)}, **HX)
    assert after.status_code == 200 and "The API answered 500." not in after.content.decode()


def test_resubmit_is_disabled_with_a_reason_for_a_batch_made_elsewhere(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace))
    assert batch.resubmit_unavailable_reason
    html = owner_client.get(url(batch)).content.decode()
    assert "created outside the dashboard" in html and "disabled" in html
    response = owner_client.post(url(batch, "resubmit/"), {"kinds": ["invalid"]}, follow=True)
    assert "created outside the dashboard" in response.content.decode()


def test_each_confirmation_has_its_own_page(owner_client, workspace):
    running = factories.running_batch(workspace)
    ended = factories.batch(workspace)
    assert 'id="dlg-cancel"' in owner_client.get(url(running, "cancel/")).content.decode()
    page = owner_client.get(url(ended, "delete/")).content.decode()
    assert 'id="dlg-delete" class="dialog" aria-labelledby="dlg-delete-title" open' in page


# Actions against the emulator --------------------------------------------------------------------


def synced(workspace, emulated):
    mirror.sync_workspace(workspace.pk)
    return Batch.objects.get(workspace=workspace, api_id=emulated.batch_id)


def test_it_cancels_a_running_batch(owner_client, workspace):
    batch = synced(workspace, make_batch(KEY, 2000))
    response = owner_client.post(url(batch, "cancel/"), follow=True)
    page = response.content.decode()
    assert "Canceling" in page and "waiting for the API" in page
    assert "every 1s" in page  # the page polls until the API has answered
    assert run_actions() == ["cancel"]
    batch.refresh_from_db()
    assert batch.processing_status == "canceling" and batch.cancel_initiated_at
    assert not batch.pending_action
    assert "waiting for the API" not in owner_client.get(url(batch)).content.decode()


def test_an_action_is_sent_again_only_once_its_task_cannot_still_be_running(workspace, settings):
    """An action's task may wait its turn at the rate limit and retry: the beat hands it out
    again only once it has been pending longer than any task can take."""
    from batches import actions

    settings.API_RATE_LIMIT_MAX_WAIT_SECONDS = 90
    settings.API_RETRY_MAX_WAIT_SECONDS = 60
    batch = factories.running_batch(workspace)
    asked = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(pending_action="cancel", pending_action_at=asked)
    longest = actions.longest_action()
    assert longest >= timedelta(minutes=4)  # two attempts of 90 + 10 s, a minute's backoff
    assert actions.stalled_actions(asked + timedelta(minutes=2)) == []
    assert actions.stalled_actions(asked + longest + timedelta(seconds=1)) == [batch.pk]


def test_it_refuses_to_cancel_an_ended_batch(owner_client, workspace):
    batch = factories.batch(workspace)
    response = owner_client.post(url(batch, "cancel/"), follow=True)
    assert "Only a batch in progress can be canceled" in response.content.decode()


def test_it_deletes_an_ended_batch_and_keeps_or_drops_the_local_copy(
    owner_client, workspace, frozen_now
):
    kept = synced(workspace, make_batch(KEY, 3, prefix="a"))
    dropped = synced(workspace, make_batch(KEY, 3, prefix="b"))
    frozen_now.shift(3600)
    mirror.sync_workspace(workspace.pk)
    response = owner_client.post(url(kept, "delete/"), {"keep_local": "on"}, follow=True)
    assert "The copy here is kept" in response.content.decode()
    run_actions()
    kept.refresh_from_db()
    assert kept.gone_at is not None
    response = owner_client.post(url(dropped, "delete/"), {"keep_local": "off"})
    assert response.status_code == 302 and response["Location"] == url(dropped)
    run_actions()
    assert not Batch.objects.filter(pk=dropped.pk).exists()
    # The page of the removed batch, polling, goes to the list and says what happened.
    poll = owner_client.get(url(dropped), **HX)
    assert poll.status_code == 204 and poll["HX-Redirect"] == "/"
    home = owner_client.get("/").content.decode()
    assert "Deleted" in home and "from the API and from the dashboard" in home


def test_it_will_not_delete_a_running_batch(owner_client, workspace):
    batch = synced(workspace, make_batch(KEY, 500))
    response = owner_client.post(url(batch, "delete/"), {"keep_local": "on"}, follow=True)
    assert "cancel it first" in response.content.decode()
    assert Batch.objects.filter(pk=batch.pk, gone_at=None).exists()


def test_refresh_now_updates_the_batch(owner_client, workspace, frozen_now):
    batch = synced(workspace, make_batch(KEY, 3))
    frozen_now.shift(3600)
    response = owner_client.post(url(batch, "refresh/"), follow=True)
    assert "Asking the API for this batch now" in response.content.decode()
    assert run_actions() == ["refresh"]
    batch.refresh_from_db()
    assert batch.processing_status == "ended"
