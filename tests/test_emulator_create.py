"""The checks a create call gets before a batch exists: a 400 (or 413) naming the request."""

import json

import pytest

from emulator.models import EmulatedBatch
from emulator.testing import request_params

AUTH = {"x-api-key": "sk-test-create"}


def _create(client, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/v1/messages/batches", content=raw, headers=AUTH | {"content-type": "application/json"}
    )


def _good(custom_id="ok"):
    return {"custom_id": custom_id, "params": request_params(1)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b"[" * 100_000, "Request body is nested too deeply to be read."),
        ({}, "requests: Field required"),
        ({"requests": []}, "requests: List should have at least 1 item"),
        ({"requests": [_good()], "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"requests": [_good(), {"params": {}}]}, "requests.1.custom_id: Field required"),
        (
            {"requests": [_good(), _good("has space")]},
            "requests.1.custom_id: String should match pattern",
        ),
        ({"requests": [_good("x" * 65)]}, "requests.0.custom_id: String should match pattern"),
        (
            {"requests": [_good("a"), _good("b"), _good("a")]},
            "requests.2.custom_id: Duplicate custom_id 'a' (first used by requests.0)",
        ),
        (
            {"requests": [_good(), {"custom_id": "p", "params": "text"}]},
            "requests.1.params: Input should be a valid dictionary",
        ),
        (
            {"requests": [{"custom_id": "p", "params": {}, "note": 1}]},
            "requests.0.note: Extra inputs are not permitted",
        ),
    ],
)
def test_it_refuses_a_malformed_batch_naming_the_request_and_field(emulator_http, body, message):
    answer = _create(emulator_http, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert message in answer.json()["error"]["message"]
    assert not EmulatedBatch.objects.exists()


def test_it_refuses_more_than_100000_requests(emulator_http):
    requests = [{"custom_id": f"r{n}", "params": {}} for n in range(100_001)]
    answer = _create(emulator_http, {"requests": requests})
    assert answer.status_code == 400
    assert "at most 100000 items" in answer.json()["error"]["message"]


def test_it_refuses_a_body_over_the_size_limit_with_a_413(emulator_http, settings):
    settings.EMULATOR_MAX_BODY_BYTES = 1000
    requests = [_good(f"r{n}") for n in range(20)]
    answer = _create(emulator_http, {"requests": requests})
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"


def test_it_accepts_a_body_larger_than_djangos_upload_limit(emulator_http, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    requests = [_good(f"r{n}") for n in range(100)]
    assert _create(emulator_http, {"requests": requests}).status_code == 200


def test_it_defers_checking_params_to_processing(emulator_http):
    answer = _create(emulator_http, {"requests": [{"custom_id": "later", "params": {}}]})
    assert answer.status_code == 200
    assert answer.json()["request_counts"]["processing"] == 1
