"""Try first: a few requests of a checked upload through the Messages API before the batch,
with what they could cost stated first, their answers and costs at the standard price, the
API's errors as it gave them, and the workspace's daily cap."""

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from batches import trials
from batches.models import AuditEntry, Submission, Trial, Workspace
from batches.pricing import usage_cost
from emulator.faults import set_key_faults
from tests.mirror import KEY
from tests.test_submit_once import upload

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def try_url(submission) -> str:
    return reverse("submission_try", args=[submission.workspace.slug, submission.key])


def send_all() -> list[str]:
    """What the worker does after a try: send every request waiting to be tried."""
    waiting = Trial.objects.filter(state=Trial.State.SENDING).order_by("pk")
    return [trials.send(pk) for pk in list(waiting.values_list("pk", flat=True))]


def said(response) -> str:
    """The newest message the answer left (the test does not follow redirects, so messages of
    earlier answers are still waiting)."""
    return [str(message) for message in get_messages(response.wsgi_request)][-1]


def test_the_check_keeps_what_trying_each_first_request_could_cost(workspace, user):
    submission = upload(workspace, user)
    first = submission.first_requests
    lines = (SAMPLES / "questions.jsonl").read_text().splitlines()
    assert [item["custom_id"] for item in first] == [
        json.loads(line)["custom_id"] for line in lines
    ]
    params = json.loads(lines[0])["params"]
    item = first[0]
    assert (item["model"], item["max_tokens"], item["line"]) == (
        params["model"], params["max_tokens"], 1)  # fmt: skip
    # The standard price: twice the batch price of the same most expensive outcome.
    bound = Decimal(item["cost_at_most"])
    from batches.intake.estimating import request_tokens

    tokens, _ = request_tokens(params)
    batch_price = usage_cost(
        params["model"], {"input_tokens": tokens, "output_tokens": params["max_tokens"]}
    )
    assert batch_price is not None and bound == 2 * batch_price
    assert trials.cost_of_first(submission, 2) == bound + Decimal(first[1]["cost_at_most"])


def test_trying_the_first_requests_shows_each_answer_with_its_tokens_and_standard_cost(
    workspace, user, owner_client
):
    submission = upload(workspace, user)
    page = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "Try first" in page and "at the <strong>standard price</strong>" in page
    assert (
        "the first\n              3 requests: at most about\n"
        f"              ${trials.cost_of_first(submission, 3):.4f}" in page
    )
    assert "20 of 20\n      tries left in 24 hours" in page

    response = owner_client.post(try_url(submission), {"count": "3"})
    assert response.status_code == 302 and response["Location"].endswith("#try")
    assert said(response) == (
        "Sending 3 requests through the Messages API: each answer shows below within seconds."
    )
    tried = list(Trial.objects.order_by("line"))
    assert [trial.custom_id for trial in tried] == [
        r["custom_id"] for r in submission.first_requests[:3]
    ]
    assert all(trial.state == Trial.State.SENDING and trial.created_by == user for trial in tried)
    waiting = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "Sending…" in waiting and 'hx-trigger="every 1s"' in waiting

    assert send_all() == ["answered"] * 3
    for trial in Trial.objects.all():
        assert trial.stop_reason == "end_turn" and trial.output_tokens > 0
        usage = {"input_tokens": trial.input_tokens, "output_tokens": trial.output_tokens}
        assert trial.cost == usage_cost(trial.answer_model, usage, batch=False)
        assert trial.cost is not None and trial.cost_at_most is not None
        assert trial.cost <= trial.cost_at_most * 2  # the input is an estimate
    answered = owner_client.get(submission.get_absolute_url())
    html = answered.content.decode()
    first = Trial.objects.order_by("line")[0]
    assert first.content is not None
    assert html.count("Answered") == 3 and first.content[0]["text"][:40] in html
    assert f"${first.cost:.4f}</strong> at the standard price" in html
    assert "17 of 20" in html
    entry = AuditEntry.objects.get(action=AuditEntry.Action.TRY)
    assert entry.after["custom_ids"] == [trial.custom_id for trial in tried]
    # A poll answers with the region alone.
    fragment = owner_client.get(submission.get_absolute_url(), headers={"HX-Request": "true"})
    assert fragment.status_code == 286 and b"<html" not in fragment.content  # polls no more
    assert b"Answered" in fragment.content


def test_chosen_custom_ids_are_tried_and_unknown_or_malformed_ones_are_refused(
    workspace, user, owner_client
):
    submission = upload(workspace, user)
    last = submission.first_requests[-1]["custom_id"]
    response = owner_client.post(try_url(submission), {"custom_ids": f" {last},{last} "})
    assert response.status_code == 302
    assert list(Trial.objects.values_list("custom_id", flat=True)) == [last]
    for value, message in [
        ("nobody-has-this", "No valid request of this upload has the custom_id 'nobody-has-this'"),
        ("bad id!", "'id!' is not a custom_id: 1 to 64 letters, digits, _ or -."),
        (",".join(f"q{n}" for n in range(11)), "11 custom_ids: at most 10 can be tried at once."),
    ]:
        response = owner_client.post(try_url(submission), {"custom_ids": value})
        assert response.status_code == 302
        assert message in said(response)
    response = owner_client.post(try_url(submission), {"count": "11"})
    assert said(response) == "How many: try 1 to 10 requests at once."
    assert Trial.objects.count() == 1


def test_the_daily_cap_counts_the_last_24_hours_and_zero_turns_tries_off(
    workspace, user, owner_client
):
    Workspace.objects.filter(pk=workspace.pk).update(daily_tries=3)
    submission = upload(workspace, user)
    owner_client.post(try_url(submission), {"count": "2"})
    response = owner_client.post(try_url(submission), {"count": "2"})
    assert said(response) == (
        "This workspace allows 3 tries in 24 hours and has 1 left: try fewer, or ask an admin to "
        "raise the limit in the workspace's settings."
    )
    assert Trial.objects.count() == 2
    Trial.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert trials.tries_left(Workspace.objects.get(pk=workspace.pk)) == 3
    owner_client.post(try_url(submission), {"count": "3"})
    assert Trial.objects.count() == 5
    page = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "No tries left for now" in page and "disabled>Try now" in page

    Workspace.objects.filter(pk=workspace.pk).update(daily_tries=0)
    page = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "Tries are turned off in this workspace" in page and "Try now" not in page


def test_an_api_error_is_shown_as_the_api_gave_it_and_never_retried_when_it_may_have_run(
    workspace, user, owner_client
):
    submission = upload(workspace, user)
    owner_client.post(try_url(submission), {"count": "1"})
    set_key_faults(KEY, rate_500=1.0)
    assert send_all() == ["failed"]
    trial = Trial.objects.get()
    assert (trial.status_code, trial.error_type) == (500, "api_error")
    assert "Internal server error" in trial.error_message and trial.request_id.startswith("req_")
    assert trial.cost is None
    html = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "api_error</span> (HTTP 500)" in html
    # A second run of the task finds it done: nothing is sent twice.
    assert trials.send(trial.pk) == "already done"


def test_a_try_whose_worker_stopped_says_so_and_stops_the_polling(workspace, user, owner_client):
    submission = upload(workspace, user)
    owner_client.post(try_url(submission), {"count": "1"})
    Trial.objects.update(created_at=timezone.now() - timedelta(hours=1))
    html = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "No answer came back: the worker sending it stopped." in html
    assert "hx-trigger" not in html.split('id="submission-live"')[1].split(">")[0]


def test_viewers_see_the_tries_but_cannot_make_one(workspace, user, teammate, client):
    from batches.models import Membership

    Membership.objects.filter(workspace=workspace, user=teammate).update(role="viewer")
    submission = upload(workspace, user)
    client.force_login(teammate)
    html = client.get(submission.get_absolute_url()).content.decode()
    assert "Try now" not in html
    assert client.post(try_url(submission), {"count": "1"}).status_code == 403
    assert not Trial.objects.exists()
    assert Submission.objects.get().first_requests


def test_a_task_run_again_after_its_worker_died_never_sends_twice(workspace, user, owner_client):
    from emulator.models import EmulatedKeyFaults  # noqa: F401  (the emulator's own tables)

    submission = upload(workspace, user)
    owner_client.post(try_url(submission), {"count": "1"})
    trial = Trial.objects.get()
    # The first run marked it sent, then its worker died before storing the answer.
    Trial.objects.filter(pk=trial.pk).update(sent_at=timezone.now())
    assert trials.send(trial.pk) == "failed"
    trial.refresh_from_db()
    assert trial.error_type == "not_sent_again" and "not sent a second time" in trial.error_message


def test_whatever_goes_wrong_ends_the_try_failed_never_sending(workspace, user, owner_client):
    from batches.models import BatchRequest

    submission = upload(workspace, user)
    owner_client.post(try_url(submission), {"count": "2"})
    first, second = Trial.objects.order_by("line")
    # The upload was checked again meanwhile: its requests are no longer where they were.
    BatchRequest.objects.filter(custom_id=first.custom_id).delete()
    assert trials.send(first.pk) == "failed"
    first.refresh_from_db()
    assert first.error_type == "not_stored" and "checked again" in first.error_message
    # Storage that cannot be read.
    for part in submission.parts.all():
        part.body.storage.delete(part.body.name)
    assert trials.send(second.pk) == "failed"
    second.refresh_from_db()
    assert second.error_type == "not_sent" and "could not try this request" in second.error_message


def test_an_answer_holding_a_nul_is_stored_without_it(workspace, user, owner_client, monkeypatch):
    from batches.client import ApiClient

    submission = upload(workspace, user)
    owner_client.post(try_url(submission), {"count": "1"})
    answer = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "a\x00b"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }  # fmt: skip
    monkeypatch.setattr(ApiClient, "create_message", lambda self, body, betas=None: answer)
    assert send_all() == ["answered"]
    assert Trial.objects.get().content == [{"type": "text", "text": "ab"}]


def test_a_request_asking_for_absurd_max_tokens_is_refused_before_trying(
    workspace, user, owner_client
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from batches import submissions
    from tests.helpers import run_checks

    hello = [{"role": "user", "content": "Hi"}]
    params = {"model": "claude-sonnet-4-5", "max_tokens": 10**10, "messages": hello}
    line = {"custom_id": "huge", "params": params}

    submission = submissions.create_submission(
        workspace, user, SimpleUploadedFile("huge.jsonl", json.dumps(line).encode())
    )
    run_checks()
    submission.refresh_from_db()
    response = owner_client.post(try_url(submission), {"count": "1"})
    assert "asks for max_tokens 10,000,000,000, more than any model answers" in said(response)
    assert not Trial.objects.exists()
