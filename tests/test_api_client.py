"""The API client on its own, against hand-made answers (httpx.MockTransport)."""

import io

import httpx
import pytest

from batches.client import ApiClient, ApiError

WAITS: list[float] = []


def client_for(handler, **kwargs):
    """A client whose transport and sleep are the test's: its two seams to the outside world."""
    return ApiClient("https://api.example.test", "sk-test", transport=httpx.MockTransport(handler),
                     sleep=WAITS.append, **kwargs)  # fmt: skip


def batch(batch_id: str) -> dict:
    """A MessageBatch as the API answers it (every answer is checked for its shape)."""
    counts = {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    return {"id": batch_id, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": counts, "created_at": "2026-12-01T10:00:00Z",
            "expires_at": "2026-12-02T10:00:00Z", "ended_at": None, "cancel_initiated_at": None,
            "archived_at": None, "results_url": None}  # fmt: skip


def error(status, kind, message, **headers):
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return httpx.Response(status, headers=headers, json=body)


@pytest.fixture(autouse=True)
def no_waiting():
    WAITS.clear()
    return WAITS


def test_it_sends_the_key_and_version_headers():
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(
            200, json={"data": [], "has_more": False, "first_id": None, "last_id": None}
        )

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


def test_it_retries_429_honouring_retry_after_and_then_succeeds(no_waiting, settings):
    settings.API_RETRY_INITIAL_WAIT_SECONDS = 0.5
    settings.API_RETRY_MAX_WAIT_SECONDS = 60
    answers = iter(
        [
            error(429, "rate_limit_error", "slow", **{"retry-after": "7"}),
            error(529, "overloaded_error", "busy"),
            httpx.Response(200, json=batch("msgbatch_1")),
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


def create(client, **kwargs):
    body = b'{"requests": []}'
    return client.create_batch(lambda: io.BytesIO(body), len(body), **kwargs)


def test_a_create_that_may_have_made_its_batch_is_looked_for_before_it_is_sent_again():
    posts, looks = [], []

    def handler(request):
        posts.append(request)
        return error(500, "api_error", "x")

    def find_existing():
        looks.append(1)
        return batch("msgbatch_made_anyway")

    found = create(client_for(handler, max_attempts=5), find_existing=find_existing)
    assert found["id"] == "msgbatch_made_anyway"
    assert len(posts) == 1 and len(looks) == 1  # never a second create


def test_a_create_turned_away_is_sent_again_without_looking():
    answers = iter([error(529, "overloaded_error", "busy"), httpx.Response(200, json=batch("b"))])
    sent = []

    def handler(request):
        assert request.headers["content-length"] == str(len(b'{"requests": []}'))
        return next(answers)

    found = create(
        client_for(handler),
        before_send=lambda: sent.append(1),
        find_existing=lambda: pytest.fail("nothing can have been made"),
    )
    assert found["id"] == "b" and len(sent) == 2


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
