"""The dashboard's pages as full pages and as HTMX fragments, its actions and its downloads."""

import csv
import gzip
import io
import json
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from batches import mirror, notices, summaries
from batches.models import Batch, Result, UserPreference
from emulator.testing import make_batch
from tests.helpers import run_actions
from tests.mirror import KEY

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def mirror_batch(workspace, number=0, **fields):
    now = timezone.now()
    values = {
        "processing_status": "ended",
        "succeeded": 3,
        "errored": 1,
        "created_at": now - timedelta(hours=number + 1),
        "expires_at": now - timedelta(hours=number + 1) + timedelta(hours=24),
        "ended_at": now - timedelta(hours=number),
        **fields,
    }
    return Batch.objects.create(workspace=workspace, api_id=f"msgbatch_{number:04d}", **values)


def add_results(batch, count=4):
    rows = []
    for number in range(count):
        if number % 4 == 3:
            rows.append(
                Result(
                    batch=batch,
                    custom_id=f"req-{number:04d}",
                    result_type="errored",
                    error_type="invalid_request_error",
                    error_message=f"model: bad model {number}",
                )
            )
        else:
            rows.append(
                Result(
                    batch=batch,
                    custom_id=f"req-{number:04d}",
                    result_type="succeeded",
                    stop_reason="end_turn",
                    model="claude-haiku-4-5",
                    input_tokens=100,
                    output_tokens=50,
                    content=[{"type": "text", "text": f"Answer <b>{number}</b>"}],
                    answer_text=f"Answer <b>{number}</b>",
                )
            )
    Result.objects.bulk_create(rows)
    Batch.objects.filter(pk=batch.pk).update(
        results_ingested=count, results_ingested_at=timezone.now()
    )
    summaries.store_totals(Batch.objects.filter(pk=batch.pk))  # as ingestion does
    batch.refresh_from_db()
    return batch


def url(batch, suffix=""):
    return f"{batch.get_absolute_url()}{suffix}"


# Outsiders --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [
        "",
        "results/",
        "results/req-0000/",
        "results/req-0000/raw/",
        "download/results.csv",
        "download/results.jsonl",
        "download/answers.csv",
        "cancel/",
        "delete/",
        "resubmit/",
    ],
)
def test_it_answers_404_for_a_batch_of_a_workspace_the_user_is_not_in(
    client, outsider, workspace, suffix
):
    batch = add_results(mirror_batch(workspace))
    client.force_login(outsider)
    assert client.get(url(batch, suffix)).status_code == 404
    assert client.get(url(batch, suffix), **HX).status_code == 404


@pytest.mark.parametrize("suffix", ["cancel/", "delete/", "refresh/", "resubmit/"])
def test_it_refuses_actions_on_an_outsiders_batch(client, outsider, workspace, suffix):
    batch = mirror_batch(workspace)
    client.force_login(outsider)
    assert client.post(url(batch, suffix)).status_code == 404
    assert Batch.objects.filter(pk=batch.pk, gone_at=None).exists()


# The list ---------------------------------------------------------------------------------------


def test_it_lists_batches_with_progress_cost_and_filters(owner_client, workspace, user):
    ended = add_results(mirror_batch(workspace, 1, name="Nightly eval", submitted_by=user))
    running = mirror_batch(
        workspace, 0, processing_status="in_progress", processing=4, succeeded=0, errored=0,
        ended_at=None, created_at=timezone.now() - timedelta(minutes=3),
    )  # fmt: skip
    html = owner_client.get("/").content.decode()
    assert "Nightly eval" in html and running.api_id in html
    assert "running 3 m" in html and "of at most 24 h" in html
    assert "$0.0" in html  # the actual cost of the ended batch, from its results' usage
    ended.refresh_from_db()
    assert ended.cost > 0 and ended.input_tokens == 300
    assert 'hx-trigger="every 3s, batches-changed from:body"' in html

    only_problems = owner_client.get("/", {"problems": "errored"})
    assert [b.api_id for b in only_problems.context["rows"]] == [ended.api_id, running.api_id][:1]
    searched = owner_client.get("/", {"q": "nightly"})
    assert [b.pk for b in searched.context["rows"]] == [ended.pk]
    mine = owner_client.get("/", {"submitter": str(user.pk)})
    assert [b.pk for b in mine.context["rows"]] == [ended.pk]
    outside = owner_client.get("/", {"submitter": "outside", "status": "active"})
    assert [b.pk for b in outside.context["rows"]] == [running.pk]
    none = owner_client.get("/", {"q": "nothing-like-this"}).content.decode()
    assert "No batches match these filters" in none


@pytest.mark.parametrize(
    "query",
    [
        {"submitter": "\u00b2"},  # isdigit() says yes, int() says no
        {"submitter": "\u0663"},  # an Arabic-Indic three
        {"submitter": "9" * 40},  # too big for any id column
        {"submitter": "1\n"},
        {"page": "\u00b2"},
        {"page": "-1"},
        {"page": "9" * 40},
        {"status": "\x00"},
        {"workspace": "a\x00b"},
        {"q": "\x00"},
    ],
)
def test_it_answers_any_list_query_without_a_500(owner_client, workspace, user, query):
    mirror_batch(workspace, submitted_by=user)
    assert owner_client.get("/", query).status_code == 200
    assert owner_client.get(workspace.get_absolute_url(), query).status_code == 200
    assert owner_client.get("/", query, **HX).status_code in (200, 286)


@pytest.mark.parametrize(
    "query",
    [
        {"after": "\x00"},
        {"before": "req\x00"},
        {"type": "\u00b2"},
        {"error_type": "\x00"},
        {"stop_reason": "\x00"},
        {"q": "\x00" * 300},
    ],
)
def test_it_answers_any_results_query_without_a_500(owner_client, workspace, query):
    batch = add_results(mirror_batch(workspace))
    assert owner_client.get(url(batch, "results/"), query).status_code == 200
    assert owner_client.get(url(batch, "results/"), query, **HX).status_code == 200


def test_it_answers_404_for_a_nul_in_an_address(owner_client, workspace):
    batch = add_results(mirror_batch(workspace))
    assert owner_client.get(f"/w/{workspace.slug}/batches/msgbatch_%00/").status_code == 404
    assert owner_client.get(url(batch, "results/req%00/")).status_code == 404
    assert owner_client.get(url(batch, "results/req%00/raw/")).status_code == 404


def test_the_list_fragment_polls_while_a_batch_runs_and_stops_with_286(owner_client, workspace):
    running = mirror_batch(workspace, processing_status="in_progress", ended_at=None)
    fragment = owner_client.get("/", **HX)
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and 'id="batch-list"' in body and "every 3s" in body
    Batch.objects.filter(pk=running.pk).update(processing_status="ended")
    stopped = owner_client.get("/", **HX)
    assert stopped.status_code == 286
    assert "every 3s" not in stopped.content.decode()
    assert "batches-changed from:body" in stopped.content.decode()


def fingerprint_of(body: str) -> str:
    """The fingerprint a polled region sends back with its next poll."""
    return body.split("""hx-vals='{"v": \"""", 1)[1].split('"', 1)[0]


def test_the_list_poll_answers_204_until_what_it_shows_changes(owner_client, workspace, frozen_now):
    running = mirror_batch(workspace, processing_status="in_progress", ended_at=None, processing=2,
                           succeeded=0, errored=0)  # fmt: skip
    seen = fingerprint_of(owner_client.get("/").content.decode())
    unchanged = owner_client.get("/", {"v": seen}, **HX)
    assert unchanged.status_code == 204 and unchanged.content == b""
    Batch.objects.filter(pk=running.pk).update(processing=1, succeeded=1)
    changed = owner_client.get("/", {"v": seen}, **HX)
    assert changed.status_code == 200 and "1 of 2 done" in changed.content.decode()
    again = fingerprint_of(changed.content.decode())
    assert again != seen and owner_client.get("/", {"v": again}, **HX).status_code == 204
    assert "v=" not in changed.content.decode().split("hx-vals")[0]  # not carried in the address
    Batch.objects.filter(pk=running.pk).update(processing_status="ended", ended_at=timezone.now())
    assert owner_client.get("/", {"v": again}, **HX).status_code == 286


def test_the_list_poll_sends_the_running_time_when_its_text_changes(
    owner_client, workspace, frozen_now
):
    mirror_batch(workspace, processing_status="in_progress", ended_at=None, processing=5,
                 succeeded=0, errored=0)  # fmt: skip
    frozen_now.shift(2 * 3600)  # past the first hour, the label says hours and minutes
    seen = fingerprint_of(owner_client.get("/").content.decode())
    frozen_now.shift(20)
    assert owner_client.get("/", {"v": seen}, **HX).status_code == 204
    frozen_now.shift(60)
    moved = owner_client.get("/", {"v": seen}, **HX)
    assert moved.status_code == 200 and "running 3 h 1 m of at most 24 h" in moved.content.decode()


def test_the_workspace_page_is_the_list_for_one_workspace(owner_client, workspace):
    batch = mirror_batch(workspace)
    assert batch.api_id in owner_client.get(workspace.get_absolute_url()).content.decode()
    fragment = owner_client.get(workspace.get_absolute_url(), **HX)
    assert fragment.status_code == 286 and "<html" not in fragment.content.decode()


def test_list_pages_keep_a_constant_number_of_queries(
    owner_client, workspace, user, django_assert_max_num_queries
):
    for number in range(2):
        add_results(mirror_batch(workspace, number, submitted_by=user))
    owner_client.get("/")  # works out the stored totals once
    with django_assert_max_num_queries(20) as small:
        owner_client.get("/")
    limit = len(small.captured_queries)
    for number in range(2, 24):
        add_results(mirror_batch(workspace, number, submitted_by=user))
        mirror_batch(workspace, 100 + number, processing_status="in_progress", ended_at=None)
    owner_client.get("/")
    for path in ("/", "/?status=ended&q=msg", workspace.get_absolute_url()):
        with django_assert_max_num_queries(limit):
            owner_client.get(path)
        with django_assert_max_num_queries(limit):
            owner_client.get(path, **HX)


def test_an_empty_list_says_what_to_do_next(owner_client, workspace):
    html = owner_client.get("/").content.decode()
    assert "No batches yet" in html and f"/w/{workspace.slug}/upload/" in html


# The header counter and finished-batch toasts ---------------------------------------------------


def test_the_poll_counts_running_batches_and_toasts_an_ended_batch_once(
    owner_client, workspace, user
):
    mirror_batch(workspace, 5, processing_status="in_progress", ended_at=None)
    ended = mirror_batch(workspace, 0, submitted_by=user, name="Mine")
    body = owner_client.get("/poll/", **HX).content.decode()
    assert "1 running" in body and 'hx-swap-oob="beforeend:#toasts"' in body
    assert "Batch ended:" in body and "Mine" in body and "data-browser-notify" not in body
    again = owner_client.get("/poll/", **HX).content.decode()
    assert "Batch ended:" not in again
    ended.refresh_from_db()
    assert ended.end_notified_at is not None


def test_a_toast_asks_for_a_browser_notification_when_opted_in(owner_client, workspace, user):
    owner_client.post("/preferences/notifications/", {"enabled": "on"}, **HX)
    assert UserPreference.objects.get(user=user).browser_notifications
    mirror_batch(workspace, submitted_by=user, name="Mine")
    body = owner_client.get("/poll/", **HX).content.decode()
    assert 'data-browser-notify="Batch ended: Mine"' in body


def state(user):
    from batches.views import counter_state

    return counter_state(user)[1]


def test_the_idle_counter_polls_slowly_and_once_at_page_load(owner_client, workspace, user):
    html = owner_client.get("/").content.decode()
    assert f'hx-get="/poll/?seen={state(user)}" hx-trigger="load, every 30s"' in html


def test_the_counter_polls_every_5s_while_a_batch_runs(owner_client, workspace, user):
    mirror_batch(workspace, processing_status="in_progress", ended_at=None)
    html = owner_client.get("/").content.decode()
    assert f'hx-get="/poll/?seen={state(user)}" hx-trigger="every 5s"' in html
    assert state(user).startswith("1.")


def test_the_poll_answers_204_when_nothing_changed(owner_client, workspace, user):
    idle = state(user)
    assert owner_client.get(f"/poll/?seen={idle}", **HX).status_code == 204
    running = mirror_batch(workspace, processing_status="in_progress", ended_at=None)
    response = owner_client.get(f"/poll/?seen={idle}", **HX)
    assert response.status_code == 200 and response["HX-Trigger"] == "batches-changed"
    body = response.content.decode()
    assert "1 running" in body and 'hx-trigger="every 5s"' in body
    unchanged = owner_client.get(f"/poll/?seen={state(user)}", **HX)
    assert unchanged.status_code == 204 and unchanged.content == b""
    before_end = state(user)
    Batch.objects.filter(pk=running.pk).update(processing_status="ended")
    ended = owner_client.get(f"/poll/?seen={before_end}", **HX)
    assert ended.status_code == 200 and ended["HX-Trigger"] == "batches-changed"
    # Idle, it keeps polling slowly (a batch started from a script must still show up), and the
    # counter the poll sends does not ask for another poll at once.
    assert 'hx-trigger="every 30s"' in ended.content.decode()


def test_a_batch_that_started_and_ended_between_two_polls_is_news(owner_client, workspace, user):
    idle = state(user)
    mirror_batch(workspace, name="From a script")  # created and already ended: count unchanged
    response = owner_client.get(f"/poll/?seen={idle}", **HX)
    assert response.status_code == 200 and response["HX-Trigger"] == "batches-changed"


def test_the_poll_speeds_up_while_an_upload_is_being_submitted(owner_client, workspace, user):
    import uuid

    from batches.models import Submission

    submission = Submission.objects.create(
        key=uuid.uuid4(), workspace=workspace, created_by=user, source_filename="a.jsonl",
        source_format="jsonl", state=Submission.State.SUBMITTING,
    )  # fmt: skip
    idle = state(user)
    response = owner_client.get(f"/poll/?seen={idle}", **HX)
    assert response.status_code == 200
    assert f'seen={idle}&amp;submitting=1" hx-trigger="every 5s"' in response.content.decode()
    assert owner_client.get(f"/poll/?seen={idle}&submitting=1", **HX).status_code == 204
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.SUBMITTED)
    mirror_batch(workspace, processing_status="in_progress", ended_at=None)
    created = owner_client.get(f"/poll/?seen={idle}&submitting=1", **HX)
    assert created.status_code == 200 and created["HX-Trigger"] == "batches-changed"
    assert f'seen={state(user)}" hx-trigger="every 5s"' in created.content.decode()


def test_the_poll_sends_a_toast_even_when_the_count_is_unchanged(owner_client, workspace, user):
    mirror_batch(workspace, submitted_by=user, name="Mine")
    response = owner_client.get(f"/poll/?seen={state(user)}", **HX)
    assert response.status_code == 200 and "Batch ended:" in response.content.decode()
    assert owner_client.get(f"/poll/?seen={state(user)}", **HX).status_code == 204


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
    old = mirror_batch(workspace, 48, submitted_by=user)
    Batch.objects.filter(pk=old.pk).update(first_seen_at=timezone.now())
    assert "Batch ended:" not in owner_client.get("/poll/").content.decode()


def test_it_emails_and_posts_the_webhook_once(workspace, user, mailoutbox):
    import httpx

    user.email = "owner@example.test"
    user.save()
    workspace.notify_email = True
    workspace.notify_webhook_url = "https://hooks.example.test/batches"
    workspace.save()
    batch = mirror_batch(workspace, submitted_by=user, name="Mine")
    posted = []

    def handler(request):
        posted.append(json.loads(request.content))
        return httpx.Response(200)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    assert notices.batches_to_announce(workspace.pk) == [batch.pk]
    assert notices.announce(batch.pk, http=http) == {"email": True, "webhook": True}
    assert notices.announce(batch.pk, http=http) == {"skipped": True}
    assert len(mailoutbox) == 1 and "Mine" in mailoutbox[0].subject
    assert posted[0]["id"] == batch.api_id and posted[0]["request_counts"]["succeeded"] == 3
    assert posted[0]["url"].endswith(batch.get_absolute_url())


# One batch --------------------------------------------------------------------------------------


def test_the_batch_page_shows_timeline_cost_and_errors(owner_client, workspace):
    batch = add_results(mirror_batch(workspace, errored=1, succeeded=3))
    html = owner_client.get(url(batch)).content.decode()
    for text in ("Timeline", "Results downloadable from the API until", "Actual cost",
                 "Errors by type", "invalid_request_error", "needs a fix", "req-0003",
                 "Created outside the dashboard", "Results CSV"):  # fmt: skip
        assert text in html, text
    fragment = owner_client.get(url(batch), **HX)
    assert fragment.status_code == 286 and "<html" not in fragment.content.decode()


def test_the_batch_fragment_polls_while_running(owner_client, workspace):
    batch = mirror_batch(workspace, processing_status="in_progress", ended_at=None)
    fragment = owner_client.get(url(batch), **HX)
    assert fragment.status_code == 200 and "every 3s" in fragment.content.decode()
    assert "Cancel batch" in fragment.content.decode()


def test_the_batch_poll_answers_204_until_a_count_changes(owner_client, workspace, frozen_now):
    batch = mirror_batch(workspace, processing_status="in_progress", ended_at=None, processing=4,
                         succeeded=0, errored=0)  # fmt: skip
    seen = fingerprint_of(owner_client.get(url(batch)).content.decode())
    assert owner_client.get(url(batch), {"v": seen}, **HX).status_code == 204
    Batch.objects.filter(pk=batch.pk).update(processing=3, succeeded=1)
    changed = owner_client.get(url(batch), {"v": seen}, **HX)
    assert changed.status_code == 200 and "1 of 4 done" in changed.content.decode()
    Batch.objects.filter(pk=batch.pk).update(processing_status="ended", ended_at=timezone.now())
    ended = owner_client.get(url(batch), {"v": fingerprint_of(changed.content.decode())}, **HX)
    assert ended.status_code == 286 and "every 3s" not in ended.content.decode()


def test_the_batch_page_stops_polling_while_a_failed_fetch_waits_to_retry(
    owner_client, workspace, frozen_now
):
    batch = mirror_batch(workspace, results_url="https://api.example/results", ingest_attempts=3,
                         ingest_error="The API answered 500.",
                         ingest_not_before=timezone.now() + timedelta(minutes=10))  # fmt: skip
    fragment = owner_client.get(url(batch), **HX)
    body = fragment.content.decode()
    assert fragment.status_code == 286 and "every 3s" not in body
    assert "The API answered 500." in body and "Refresh now" in body
    Batch.objects.filter(pk=batch.pk).update(ingest_not_before=None, ingest_error="")
    assert "every 3s" in owner_client.get(url(batch)).content.decode()


def test_resubmit_is_disabled_with_a_reason_for_a_batch_made_elsewhere(owner_client, workspace):
    batch = add_results(mirror_batch(workspace))
    html = owner_client.get(url(batch)).content.decode()
    assert "created outside the dashboard" in html and "disabled" in html
    response = owner_client.post(url(batch, "resubmit/"), {"kinds": ["invalid"]}, follow=True)
    assert "created outside the dashboard" in response.content.decode()


def test_each_confirmation_has_its_own_page(owner_client, workspace):
    running = mirror_batch(workspace, 1, processing_status="in_progress", ended_at=None)
    ended = mirror_batch(workspace, 2)
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


def test_it_refuses_to_cancel_an_ended_batch(owner_client, workspace):
    batch = mirror_batch(workspace)
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
    assert owner_client.get(url(dropped)).status_code == 404  # said once


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


# Results ----------------------------------------------------------------------------------------


def test_the_explorer_filters_and_searches(owner_client, workspace):
    batch = add_results(mirror_batch(workspace), 40)
    page = owner_client.get(url(batch, "results/"))
    assert len(page.context["results"]) == 40
    assert "invalid_request_error (10)" in page.content.decode()
    errored = owner_client.get(url(batch, "results/"), {"error_type": "invalid_request_error"})
    assert {r.result_type for r in errored.context["results"]} == {"errored"}
    stop = owner_client.get(url(batch, "results/"), {"stop_reason": "end_turn"})
    assert len(stop.context["results"]) == 30
    searched = owner_client.get(url(batch, "results/"), {"q": "Answer <b>12<"})
    assert [r.custom_id for r in searched.context["results"]] == ["req-0012"]
    fragment = owner_client.get(url(batch, "results/"), {"q": "0012"}, **HX)
    body = fragment.content.decode()
    assert "<html" not in body and "req-0012" in body and "&lt;b&gt;" in body


def test_one_result_shows_the_answer_safely_with_previous_and_next(owner_client, workspace):
    batch = add_results(mirror_batch(workspace), 4)
    html = owner_client.get(url(batch, "results/req-0001/")).content.decode()
    assert "Answer &lt;b&gt;1&lt;/b&gt;" in html and "<b>1</b>" not in html
    assert "results/req-0000/" in html and "results/req-0002/" in html
    assert "Request not stored here" in html
    raw = owner_client.get(url(batch, "results/req-0001/raw/"), **HX).content.decode()
    assert "rebuilt from the stored result" in raw and "&quot;custom_id&quot;" in raw


def test_the_raw_json_comes_from_the_stored_file(owner_client, workspace):
    batch = add_results(mirror_batch(workspace), 4)
    line = {"custom_id": "req-0001", "result": {"type": "succeeded", "message": {"id": "m1"}}}
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(json.dumps(line).encode())))
    raw = owner_client.get(url(batch, "results/req-0001/raw/")).content.decode()
    assert "as the API sent it" in raw and "m1" in raw


def test_the_raw_json_scan_stops_at_the_first_match(owner_client, workspace):
    batch = add_results(mirror_batch(workspace), 4)
    line = {"custom_id": "req-0001", "result": {"type": "succeeded", "message": {"id": "m1"}}}
    # A broken tail after the match: a scan that read the whole file would fail on it.
    stored = gzip.compress(json.dumps(line).encode() + b"\n")[:-8] + b"broken!!"
    batch.results_file.save("r.jsonl.gz", ContentFile(stored))
    raw = owner_client.get(url(batch, "results/req-0001/raw/")).content.decode()
    assert "as the API sent it" in raw and "m1" in raw


def test_the_raw_json_of_a_file_too_big_to_scan_is_rebuilt(owner_client, workspace, monkeypatch):
    from batches import views

    batch = add_results(mirror_batch(workspace), 4)
    line = {"custom_id": "req-0001", "result": {"type": "succeeded", "message": {"id": "m1"}}}
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(json.dumps(line).encode())))
    monkeypatch.setattr(views, "RAW_SCAN_MAX_BYTES", batch.results_file.size - 1)
    opened = []
    monkeypatch.setattr(views.gzip, "GzipFile", lambda *a, **k: opened.append(a) or 1 / 0)
    raw = owner_client.get(url(batch, "results/req-0001/raw/")).content.decode()
    assert "rebuilt from the stored result" in raw and "m1" not in raw
    assert opened == []


# Downloads --------------------------------------------------------------------------------------


def streamed(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def test_it_streams_the_raw_jsonl_and_a_flat_csv(owner_client, workspace):
    batch = add_results(mirror_batch(workspace, name="Nightly eval"), 8)
    original = b'{"custom_id":"req-0000","result":{"type":"succeeded"}}\n'
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(original)))
    response = owner_client.get(url(batch, "download/results.jsonl"))
    assert streamed(response) == original
    day = timezone.localdate().isoformat()
    assert f'filename="nightly-eval-{day}-results.jsonl"' in response["Content-Disposition"]
    response = owner_client.get(url(batch, "download/results.csv"))
    rows = list(csv.reader(io.StringIO(streamed(response).decode("utf-8-sig"))))
    assert rows[0][:3] == ["custom_id", "result_type", "answer"]
    assert len(rows) == 9 and rows[1][0] == "req-0000" and rows[4][9] == "invalid_request_error"


def test_it_answers_404_for_downloads_that_do_not_exist_yet(owner_client, workspace):
    batch = mirror_batch(workspace, processing_status="in_progress", ended_at=None)
    for suffix in ("download/results.jsonl", "download/results.csv", "download/answers.csv"):
        assert owner_client.get(url(batch, suffix)).status_code == 404


def test_summaries_price_results_per_model(workspace):
    batch = add_results(mirror_batch(workspace), 4)
    summaries.store_totals([batch])
    batch.refresh_from_db()
    assert batch.output_tokens == 150 and batch.cost > 0 and not batch.cost_incomplete
