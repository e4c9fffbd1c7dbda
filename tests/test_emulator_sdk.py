"""The official `anthropic` SDK drives the emulator through the lifecycle the seeds show."""

import json
from pathlib import Path

import anthropic
import pytest
from anthropic.types.messages import MessageBatchErroredResult, MessageBatchIndividualResponse

from emulator.testing import make_batch

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
KEY = "sk-test-owner"


def _sample_requests(name="mixed-requests.jsonl"):
    lines = (SAMPLES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_it_runs_a_batch_from_create_to_delete(emulator_sdk, frozen_now):
    sdk = emulator_sdk(KEY)
    requests = _sample_requests()

    batch = sdk.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == len(requests) == 8
    assert batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600

    frozen_now.shift(1)
    assert sdk.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    frozen_now.shift(9)  # a batch of ten or fewer ends within 10 s
    ended = sdk.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 8
    assert ended.request_counts.processing == 0
    assert ended.ended_at is not None
    assert ended.results_url == f"http://testserver/emulator/v1/messages/batches/{batch.id}/results"

    results = list(sdk.messages.batches.results(batch.id))
    by_id = {result.custom_id: result.result for result in results}
    assert [result.custom_id for result in results] != [r["custom_id"] for r in requests]
    assert set(by_id) == {r["custom_id"] for r in requests}
    assert all(result.type == "succeeded" for result in by_id.values())
    weather = by_id["weather-sf"].message
    assert weather.stop_reason == "tool_use"
    assert [block.type for block in weather.content] == ["text", "tool_use"]
    assert weather.content[1].name == "get_weather"
    assert "location" in weather.content[1].input
    assert weather.model == "claude-sonnet-4-5-20250929"
    cached = by_id["cached-analysis-1"].message.usage
    assert cached.cache_creation_input_tokens > 0

    deleted = sdk.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.retrieve(batch.id)


def test_it_pages_the_list_newest_first_in_both_directions(emulator_sdk, frozen_now):
    sdk = emulator_sdk(KEY)
    created = []
    for _ in range(7):
        created.append(make_batch(KEY, 2).batch_id)
        frozen_now.shift(1)
    make_batch("sk-someone-else", 1)
    newest_first = created[::-1]

    assert [b.id for b in sdk.messages.batches.list(limit=3)] == newest_first  # auto-paging

    first = sdk.messages.batches.list(limit=3)
    assert [b.id for b in first.data] == newest_first[:3]
    assert (first.has_more, first.first_id, first.last_id) == (True, newest_first[0], created[4])
    second = sdk.messages.batches.list(limit=3, after_id=first.last_id)
    assert [b.id for b in second.data] == newest_first[3:6]
    third = sdk.messages.batches.list(limit=3, after_id=second.last_id)
    assert [b.id for b in third.data] == newest_first[6:]
    assert third.has_more is False

    back = sdk.messages.batches.list(limit=3, before_id=third.first_id)
    assert [b.id for b in back.data] == newest_first[3:6]
    assert back.has_more is True
    front = sdk.messages.batches.list(limit=3, before_id=back.first_id)
    assert [b.id for b in front.data] == newest_first[:3]
    assert front.has_more is False
    assert [b.id for b in sdk.messages.batches.list(limit=3, before_id=created[3])] == (
        newest_first[:3]
    )

    default = sdk.messages.batches.list()
    assert len(default.data) == 7 and default.has_more is False


def test_it_gives_all_four_result_types_across_batches(emulator_sdk, frozen_now, settings):
    sdk = emulator_sdk(KEY)
    mixed = _sample_requests("questions.jsonl")
    bad = {**mixed[0]["params"], "model": "claude-unknown-9"}
    mixed.append({"custom_id": "bad-model", "params": bad})
    finished = sdk.messages.batches.create(requests=mixed)
    settings.EMULATOR_SECONDS_PER_REQUEST = 10.0
    canceled = sdk.messages.batches.create(requests=_sample_requests("questions.jsonl"))
    expiring = make_batch("sk-test-owner-fault-expire", 6)

    frozen_now.shift(15)  # the first finished, the second has done one request
    canceling = sdk.messages.batches.cancel(canceled.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    frozen_now.shift(5)
    after_cancel = sdk.messages.batches.retrieve(canceled.id)
    assert after_cancel.processing_status == "ended"
    assert after_cancel.request_counts.succeeded == 1
    assert after_cancel.request_counts.canceled == 3

    kinds: dict[str, MessageBatchIndividualResponse] = {}
    for batch_id in (finished.id, canceled.id):
        for line in sdk.messages.batches.results(batch_id):
            kinds.setdefault(line.result.type, line)
    frozen_now.shift(24 * 3600)
    expired_sdk = emulator_sdk("sk-test-owner-fault-expire")
    expired_batch = expired_sdk.messages.batches.retrieve(expiring.batch_id)
    assert expired_batch.processing_status == "ended"
    assert expired_batch.ended_at == expired_batch.expires_at
    assert expired_batch.request_counts.expired == 3
    assert expired_batch.request_counts.succeeded == 3
    for line in expired_sdk.messages.batches.results(expiring.batch_id):
        kinds.setdefault(line.result.type, line)

    assert set(kinds) == {"succeeded", "errored", "canceled", "expired"}
    errored = kinds["errored"].result
    assert isinstance(errored, MessageBatchErroredResult)
    error = errored.error
    assert kinds["errored"].custom_id == "bad-model"
    assert error.type == "error"
    assert error.error.type == "invalid_request_error"
    assert error.error.message == "model: claude-unknown-9 is not a valid model"


def test_it_cancels_a_batch_of_20000_still_running_30_seconds_after_creation(
    emulator_sdk, frozen_now
):
    sdk = emulator_sdk(KEY)
    batch = make_batch(KEY, 20_000)
    frozen_now.shift(30)
    running = sdk.messages.batches.retrieve(batch.batch_id)
    assert running.processing_status == "in_progress"
    assert running.request_counts.processing == 20_000  # the documented contract

    canceling = sdk.messages.batches.cancel(batch.batch_id)
    assert canceling.processing_status == "canceling"
    frozen_now.shift(2)
    ended = sdk.messages.batches.retrieve(batch.batch_id)
    assert ended.processing_status == "ended"
    counts = ended.request_counts
    assert counts.canceled > 0 and counts.succeeded > 0
    assert counts.succeeded + counts.canceled == 20_000


def test_it_answers_errors_in_the_envelope_with_a_request_id(emulator_sdk, emulator_http):
    sdk = emulator_sdk(KEY)
    batch = make_batch(KEY, 3)

    with pytest.raises(anthropic.NotFoundError) as unknown:
        sdk.messages.batches.retrieve("msgbatch_01nothinghere")
    assert unknown.value.type == "not_found_error"  # the envelope's error.type
    assert (unknown.value.request_id or "").startswith("req_")

    with pytest.raises(anthropic.NotFoundError):
        emulator_sdk("sk-test-outsider").messages.batches.retrieve(batch.batch_id)
    with pytest.raises(anthropic.NotFoundError):
        emulator_sdk("sk-test-outsider").messages.batches.cancel(batch.batch_id)

    with pytest.raises(anthropic.BadRequestError) as in_progress:
        sdk.messages.batches.delete(batch.batch_id)
    assert "cancel it first" in (in_progress.value.api_message or "")  # its error.message

    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        sdk.messages.batches.results(batch.batch_id)  # no results_url yet: the SDK refuses
    early = emulator_http.get(
        f"/v1/messages/batches/{batch.batch_id}/results", headers={"x-api-key": KEY}
    )
    assert early.status_code == 400
    no_key = emulator_http.get("/v1/messages/batches")
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert no_key.headers["request-id"].startswith("req_")


def test_it_accepts_the_key_in_x_api_key_as_well_as_bearer(emulator_http):
    batch = make_batch(KEY, 1)
    by_header = emulator_http.get(
        f"/v1/messages/batches/{batch.batch_id}", headers={"x-api-key": KEY}
    )
    by_bearer = emulator_http.get(
        f"/v1/messages/batches/{batch.batch_id}", headers={"authorization": f"Bearer {KEY}"}
    )
    assert by_header.status_code == by_bearer.status_code == 200
    assert by_header.json()["id"] == batch.batch_id


def test_it_lists_models_with_their_output_limits(emulator_sdk):
    sdk = emulator_sdk(KEY)
    models = {model.id: model for model in sdk.models.list(limit=5)}
    used = {r["params"]["model"] for r in _sample_requests() + _sample_requests("questions.jsonl")}
    assert used <= set(models)
    assert {"claude-opus-4-1", "claude-3-5-haiku-20241022", "claude-3-7-sonnet-20250219"} <= set(
        models
    )
    assert models["claude-3-5-haiku-20241022"].max_tokens == 8192
    assert sdk.models.retrieve("claude-haiku-4-5").max_tokens == 64_000
    page = sdk.models.list(limit=2)
    assert page.has_more is True and len(page.data) == 2
