"""How a batch runs in the emulator: timing, outcomes, generated messages, counts, big batches."""

import json
import time
import tracemalloc
from datetime import timedelta

import pytest

from emulator import processing
from emulator.faults import workspace_of
from emulator.models import EmulatedBatch, EmulatedRequestChunk
from emulator.testing import make_batch, request_params
from emulator.validation import check_params

KEY = "sk-test-processing"
AUTH = {"x-api-key": KEY}


def _params(**changes):
    params = request_params(1, model="claude-sonnet-4-5", max_tokens=1024)
    params.update(changes)
    return {key: value for key, value in params.items() if value is not None}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (_params(max_tokens=None), "max_tokens: Field required"),
        (_params(max_tokens="many"), "max_tokens: Input should be a valid integer"),
        (_params(model="claude-unknown-9"), "model: claude-unknown-9 is not a valid model"),
        (
            _params(max_tokens=100_000),
            "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens "
            "for claude-sonnet-4-5-20250929",
        ),
        (_params(messages=[]), "messages: at least one message is required"),
        (_params(stream=True), "stream: Streaming is not supported in the Message Batches API"),
        (_params(colour="blue"), "colour: Extra inputs are not permitted"),
        (
            _params(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text: Field required",
        ),
        (
            _params(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
            "messages.0.content.0.text: Input should be a valid string",
        ),
    ],
)
def test_it_explains_an_invalid_request_as_the_messages_api_would(params, message):
    assert check_params(params) == message


def test_it_accepts_every_sample_request():
    with open("tests/fixtures/samples/mixed-requests.jsonl", encoding="utf-8") as lines:
        for line in lines:
            assert check_params(json.loads(line)["params"]) is None


def test_it_generates_the_same_message_for_the_same_request():
    params = _params()
    first = processing.generate_message("msgbatch_1", "a", params)
    assert first == processing.generate_message("msgbatch_1", "a", params)
    assert first["stop_reason"] == "end_turn"
    assert "Question number 1" in first["content"][0]["text"]


def test_it_counts_more_input_tokens_for_a_longer_prompt():
    short = processing.generate_message("b", "a", _params())
    long_prompt = [{"role": "user", "content": "word " * 2000}]
    long = processing.generate_message("b", "a", _params(messages=long_prompt))
    assert long["usage"]["input_tokens"] > short["usage"]["input_tokens"] + 1000
    assert long["usage"]["output_tokens"] > 0


def test_it_stops_at_max_tokens_when_the_answer_is_capped():
    message = processing.generate_message("b", "a", _params(max_tokens=5))
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 5


def test_it_ends_a_small_batch_within_10_seconds_and_keeps_a_big_one_running_past_30(
    db, frozen_now
):
    small = make_batch(KEY, 10)
    big = make_batch(KEY, 20_000)
    now = small.created_at
    assert processing.status_at(small, now + timedelta(seconds=9.9)) == "ended"
    assert processing.status_at(big, now + timedelta(seconds=30)) == "in_progress"


def test_it_records_the_final_counts_once(db, frozen_now):
    batch = make_batch(KEY, 12, invalid_every=4)
    frozen_now.shift(60)
    ended = processing.finalize_if_due(batch)
    assert (ended.succeeded, ended.errored, ended.ended_at) == (9, 3, processing.end_time(ended))
    EmulatedBatch.objects.filter(pk=batch.pk).update(succeeded=0)  # a later read keeps them
    assert processing.finalize_if_due(EmulatedBatch.objects.get(pk=batch.pk)).succeeded == 0


def test_it_keeps_every_request_processing_until_the_end_by_default(emulator_http, frozen_now):
    batch = make_batch(KEY, 1000)
    frozen_now.shift(2.5)
    body = emulator_http.get(f"/v1/messages/batches/{batch.batch_id}", headers=AUTH).json()
    assert body["request_counts"]["processing"] == 1000


def test_it_moves_counts_as_requests_finish_when_asked(emulator_http, frozen_now, settings):
    settings.EMULATOR_PROGRESSIVE_COUNTS = True
    batch = make_batch(KEY, 1000, invalid_every=2)
    frozen_now.shift(2 + 500 * 0.002)
    counts = emulator_http.get(f"/v1/messages/batches/{batch.batch_id}", headers=AUTH).json()[
        "request_counts"
    ]
    assert counts == {
        "processing": 500, "succeeded": 250, "errored": 250, "canceled": 0, "expired": 0,
    }  # fmt: skip


def test_it_stores_a_100000_request_batch_in_a_few_rows_and_streams_its_results(
    emulator_http, frozen_now
):
    requests = [{"custom_id": f"r{n}", "params": request_params(n)} for n in range(100_000)]
    body = json.dumps({"requests": requests})
    del requests
    started = time.monotonic()
    created = emulator_http.post(
        "/v1/messages/batches", content=body, headers=AUTH | {"content-type": "application/json"}
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    assert EmulatedRequestChunk.objects.filter(batch__batch_id=batch_id).count() == 50

    frozen_now.shift(3 * 3600)
    url = f"/v1/messages/batches/{batch_id}/results"
    with emulator_http.stream("GET", url, headers=AUTH) as results:
        lines = sum(1 for _ in results.iter_lines())
    assert lines == 100_000
    assert time.monotonic() - started < 20


def test_it_streams_results_holding_one_chunk_at_a_time(db, frozen_now):
    batch = make_batch(KEY, 10_000)
    frozen_now.shift(60)
    batch = processing.finalize_if_due(batch)
    tracemalloc.start()
    total = 0
    for line in processing.results_lines(batch):
        total += len(line)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Building every result at once would take more than the whole file; one chunk is a fifth.
    assert total > 5 * 1024 * 1024
    assert peak < total / 2


def test_it_creates_batches_in_the_database_for_tests(db):
    batch = make_batch(KEY, 2500, invalid_every=5, prefix="row")
    assert batch.workspace == workspace_of(KEY)
    assert batch.chunks.count() == 2
    assert batch.chunks.get(number=1).unpack()[0][0] == "row-2000"


def test_it_answers_a_sentiment_prompt_with_a_believable_label():
    from emulator.processing import generate_message

    def label(review):
        params = {**_params(), "messages": [{"role": "user", "content":
                  f"Classify as positive, negative or neutral (one word): {review}"}]}  # fmt: skip
        return generate_message("msgbatch_1", "r", params)["content"][0]["text"]

    assert label("The product quality is excellent!") == "Positive"
    assert label("Terrible customer service, never again.") == "Negative"
    assert label("It's okay, nothing special.") == "Neutral"
