"""The API client on its own, against hand-made answers (httpx.MockTransport)."""

import httpx
import pytest

from batches import api
from batches.api import ApiClient, ApiError


def client_for(handler, **kwargs):
    return ApiClient("https://api.example.test", "sk-test", transport=httpx.MockTransport(handler),
                     **kwargs)  # fmt: skip


def error(status, kind, message, **headers):
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return httpx.Response(status, headers=headers, json=body)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    waits = []
    monkeypatch.setattr(api, "sleep", waits.append)
    return waits


def test_it_sends_the_key_and_version_headers():
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(200, json={"data": [], "has_more": False})

    client_for(handler).list_batches()
    assert seen["x-api-key"] == "sk-test" and seen["anthropic-version"] == "2023-06-01"


def test_results_lines_split_on_newlines_only_and_keep_the_apis_bytes():
    body = '{"custom_id": "a", "text": "one\u2028two\u0085three"}\r\n{"custom_id": "b"}\n\n{"x":1}'
    chunks = [body.encode()[i : i + 7] for i in range(0, len(body.encode()), 7)]

    def handler(request):
        return httpx.Response(200, content=iter(chunks))

    lines = list(client_for(handler).iter_results("https://api.example.test/results"))
    assert lines == [
        '{"custom_id": "a", "text": "one\u2028two\u0085three"}'.encode(),
        b'{"custom_id": "b"}',
        b'{"x":1}',
    ]


def test_it_retries_429_honouring_retry_after_and_then_succeeds(no_waiting):
    answers = iter(
        [
            error(429, "rate_limit_error", "slow", **{"retry-after": "7"}),
            error(529, "overloaded_error", "busy"),
            httpx.Response(200, json={"id": "msgbatch_1"}),
        ]
    )
    assert client_for(lambda request: next(answers)).retrieve_batch("msgbatch_1")["id"]
    assert len(no_waiting) == 2 and no_waiting[0] >= 7


def test_it_does_not_retry_a_client_error_and_says_why():
    calls = []

    def handler(request):
        calls.append(request)
        return error(404, "not_found_error", "no such batch", **{"request-id": "req_9"})

    with pytest.raises(ApiError) as caught:
        client_for(handler).retrieve_batch("msgbatch_x")
    failure = caught.value
    assert len(calls) == 1 and not failure.retryable and failure.is_not_found
    assert str(failure) == "404 not_found_error no such batch (request-id req_9)"


def test_a_create_is_never_retried_inside_the_client():
    calls = []

    def handler(request):
        calls.append(request)
        return error(500, "api_error", "x")

    with pytest.raises(ApiError) as caught:
        client_for(handler, max_attempts=5).create_batch(b'{"requests": []}')
    assert len(calls) == 1 and caught.value.retryable


def test_connection_errors_are_retryable_api_errors(no_waiting):
    def handler(request):
        raise httpx.ConnectError("refused")

    with pytest.raises(ApiError) as caught:
        client_for(handler, max_attempts=3).list_batches()
    assert caught.value.error_type == "connection_error" and caught.value.retryable
    assert len(no_waiting) == 2


def test_it_never_sends_the_key_to_a_results_url_on_another_host():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(200, content=b"{}\n")

    client = client_for(handler)
    with pytest.raises(ApiError, match=r"points to https://elsewhere\.example"):
        list(client.iter_results("https://elsewhere.example/v1/messages/batches/x/results"))
    assert calls == []
    assert list(client.iter_results("https://api.example.test/v1/messages/batches/x/results"))
