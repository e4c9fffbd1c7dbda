"""Every page's header: the running counter, finished-batch toasts (shown until a page
acknowledges them by POST), and the browser-notification preference."""

from datetime import timedelta

import pytest
from django.utils import timezone

from batches.models import Batch, Submission, UserPreference
from tests import factories
from tests.polls import header_fingerprint

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def seen(client) -> str:
    """The counter's fingerprint as a page shows it now."""
    return header_fingerprint(client.get("/workspaces/").content.decode())


def poll(client, fingerprint=""):
    return client.get("/poll/", {"v": fingerprint} if fingerprint else {}, **HX)


def test_the_poll_counts_running_batches_and_toasts_an_ended_batch_until_acknowledged(
    owner_client, workspace, user
):
    factories.running_batch(workspace)
    # A primary key past 999: the form must send it as digits, not as "12,345".
    ended = factories.ended_news(workspace, timedelta(minutes=2), submitted_by=user, name="Mine",
                                 pk=12_345)  # fmt: skip
    body = poll(owner_client).content.decode()
    assert "1 running" in body and 'hx-swap-oob="beforeend:#toasts"' in body
    assert "Batch ended:" in body and "Mine" in body and "data-browser-notify" not in body
    assert f'name="batch" value="{ended.pk}"' in body and 'hx-trigger="load"' in body
    # Shown, but a GET claims nothing: the page that showed it acknowledges it.
    assert Batch.objects.get(pk=ended.pk).end_notified_at is None
    assert poll(owner_client, header_fingerprint(body)).status_code == 204  # not shown twice
    assert owner_client.post("/poll/toasts/", {"batch": ended.pk}).status_code == 204
    assert Batch.objects.get(pk=ended.pk).end_notified_at is not None
    again = poll(owner_client, header_fingerprint(body))
    assert again.status_code == 200 and "Batch ended:" not in again.content.decode()


def test_a_toast_asks_for_a_browser_notification_when_opted_in(owner_client, workspace, user):
    owner_client.post("/preferences/notifications/", {"enabled": "on"}, **HX)
    assert UserPreference.objects.get(user=user).browser_notifications
    factories.ended_news(workspace, timedelta(minutes=2), submitted_by=user, name="Mine")
    body = poll(owner_client).content.decode()
    assert 'data-browser-notify="Batch ended: Mine"' in body
    assert 'data-notify-body="2 succeeded"' in body


def test_the_idle_counter_polls_slowly_and_once_at_page_load(owner_client, workspace):
    html = owner_client.get("/").content.decode()
    assert 'hx-trigger="load, every 30s, region-changed from:body"' in html
    assert poll(owner_client, seen(owner_client)).status_code == 204


def test_the_counter_polls_every_5s_while_a_batch_runs(owner_client, workspace):
    factories.running_batch(workspace)
    html = owner_client.get("/").content.decode()
    assert 'hx-trigger="every 5s, region-changed from:body"' in html and "1 running" in html


def test_the_poll_answers_204_until_the_count_changes(owner_client, workspace):
    idle = seen(owner_client)
    assert poll(owner_client, idle).status_code == 204
    running = factories.running_batch(workspace)
    response = poll(owner_client, idle)
    assert response.status_code == 200 and response["HX-Trigger"] == "batches-changed"
    body = response.content.decode()
    assert "1 running" in body and 'hx-trigger="every 5s, region-changed from:body"' in body
    unchanged = poll(owner_client, header_fingerprint(body))
    assert unchanged.status_code == 204 and unchanged.content == b""
    Batch.objects.filter(pk=running.pk).update(processing_status="ended")
    ended = poll(owner_client, header_fingerprint(body))
    assert ended.status_code == 200 and ended["HX-Trigger"] == "batches-changed"
    # Idle, it keeps polling slowly (a batch started from a script must still show up), and the
    # counter the poll sends does not ask for another poll at once.
    assert 'hx-trigger="every 30s, region-changed from:body"' in ended.content.decode()


def test_a_batch_that_started_and_ended_between_two_polls_is_news(owner_client, workspace):
    idle = seen(owner_client)
    factories.batch(workspace, name="From a script")  # created and already ended: count unchanged
    response = poll(owner_client, idle)
    assert response.status_code == 200 and response["HX-Trigger"] == "batches-changed"


def test_the_poll_speeds_up_while_an_upload_is_being_submitted(owner_client, workspace, user):
    submission = factories.submission(workspace, user, state=Submission.State.SUBMITTING)
    response = poll(owner_client, "")
    assert 'hx-trigger="every 5s, region-changed from:body"' in response.content.decode()
    submitting = header_fingerprint(response.content.decode())
    assert poll(owner_client, submitting).status_code == 204
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.SUBMITTED)
    factories.running_batch(workspace)
    created = poll(owner_client, submitting)
    assert created.status_code == 200 and created["HX-Trigger"] == "batches-changed"
    assert "1 running" in created.content.decode()


def test_the_notification_toggle_goes_back_only_to_this_site(owner_client):
    def after(next_url, **extra):
        response = owner_client.post("/preferences/notifications/", {"next": next_url}, **extra)
        return response["Location"]

    assert after("/w/research/?status=active") == "/w/research/?status=active"
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example/",
                      "javascript:alert(1)", "http://testserver/"):  # fmt: skip
        assert after(elsewhere, secure=True) == "/", elsewhere
    assert after("https://evil.example/") == "/"
    assert after("") == "/"


def test_old_batches_found_ended_are_not_news(owner_client, workspace, user):
    old = factories.batch(workspace, 48, submitted_by=user)
    Batch.objects.filter(pk=old.pk).update(first_seen_at=timezone.now())
    assert "Batch ended:" not in poll(owner_client).content.decode()
