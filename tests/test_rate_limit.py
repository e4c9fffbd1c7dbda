"""The rate limiter every API call goes through: one per key, shared through the suite's Redis.

Two ApiClients stand for two processes (a web process and a worker): the limiter keeps nothing in
a client, so what one takes the other cannot. Clients sleep through the test's own function, which
records the wait and then stops the call, so no test waits a minute.
"""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from batches import ratelimit
from batches.client import ApiClient, ApiError


class Waited(Exception):
    pass


def sleeper(waits: list[float]):
    def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise Waited

    return sleep


def client_for(handler, key="sk-ant-team-key", waits=None):
    return ApiClient("https://api.example.test", key, transport=httpx.MockTransport(handler),
                     sleep=sleeper(waits if waits is not None else []))  # fmt: skip


EMPTY_PAGE = {"data": [], "has_more": False, "first_id": None, "last_id": None}


def listing(request):
    return httpx.Response(200, json=EMPTY_PAGE)


@pytest.fixture
def three_a_minute(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    settings.API_RETRY_MAX_WAIT_SECONDS = 60


def test_processes_sharing_a_key_share_its_limit_and_wait_for_the_oldest_call(three_a_minute):
    calls = []

    def handler(request):
        calls.append(request.url.path)
        return listing(request)

    web, worker = client_for(handler), client_for(handler)
    web.list_batches()
    worker.list_batches()
    web.list_batches()
    waits: list[float] = []
    late = client_for(handler, waits=waits)
    with pytest.raises(Waited):
        late.list_batches()
    assert len(calls) == 3, "the fourth call in a minute never reached the API"
    assert 58 < waits[0] <= 60.1, waits


def test_another_key_has_a_limit_of_its_own(three_a_minute):
    for _ in range(3):
        client_for(listing).list_batches()
    client_for(listing, key="sk-ant-other-team").list_batches()  # no wait, no error


def test_a_wait_longer_than_allowed_fails_as_rate_limited_without_calling(three_a_minute, settings):
    settings.API_RATE_LIMIT_MAX_WAIT_SECONDS = 10
    calls = []

    def handler(request):
        calls.append(1)
        return listing(request)

    for _ in range(3):
        client_for(handler).list_batches()
    with pytest.raises(ApiError) as failure:
        client_for(handler).list_batches()
    assert failure.value.error_type == "rate_limited" and not failure.value.retryable
    assert "at most 3 calls a minute" in str(failure.value)
    assert len(calls) == 3


def test_a_429_holds_every_other_process_for_its_retry_after(three_a_minute, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 100
    slow_down = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
    answers = iter([
        httpx.Response(429, headers={"retry-after": "20"}, json=slow_down),
        httpx.Response(200, json=EMPTY_PAGE),
    ])  # fmt: skip
    own_waits: list[float] = []
    told = ApiClient("https://api.example.test", "sk-ant-team-key",
                     transport=httpx.MockTransport(lambda request: next(answers)),
                     sleep=own_waits.append)  # fmt: skip
    told.list_batches()
    # The client that was told waited once, through its retry backoff, not a second time.
    assert len(own_waits) == 1 and own_waits[0] >= 20
    waits: list[float] = []
    with pytest.raises(Waited):
        client_for(listing, waits=waits).list_batches()
    assert 18 < waits[0] <= 20.1, waits


def test_the_apis_rate_limit_headers_hold_every_process_until_the_reset(three_a_minute, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 100
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")

    def handler(request):
        return httpx.Response(
            200,
            headers={"anthropic-ratelimit-requests-remaining": "0",
                     "anthropic-ratelimit-requests-reset": reset},
            json=EMPTY_PAGE,
        )  # fmt: skip

    client_for(handler).list_batches()
    assert 28 < ratelimit.try_take(ratelimit.identity("sk-ant-team-key")) <= 30.1


def test_reset_times_are_read_strictly():
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    headers = {"anthropic-ratelimit-requests-remaining": "0",
               "anthropic-ratelimit-requests-reset": "2026-12-03T12:00:12Z"}  # fmt: skip
    assert ratelimit.seconds_until_reset(headers, now) == 12
    assert ratelimit.seconds_until_reset({**headers, "anthropic-ratelimit-requests-remaining": "4"},
                                         now) is None  # fmt: skip
    assert ratelimit.seconds_until_reset({**headers, "anthropic-ratelimit-requests-reset": "soon"},
                                         now) == 1.0  # fmt: skip
    assert ratelimit.seconds_until_reset({}, now) is None


def test_results_streams_take_a_slot_too(three_a_minute):
    def handler(request):
        return httpx.Response(200, content=b'{"custom_id": "a"}\n')

    client = client_for(handler)
    for _ in range(3):
        assert list(client.iter_results("https://api.example.test/results")) == [
            b'{"custom_id": "a"}'
        ]
    with pytest.raises(Waited):
        list(client.iter_results("https://api.example.test/results"))


def test_the_key_itself_is_never_written_to_redis(three_a_minute, broker, settings):
    import redis

    client_for(listing, key="sk-ant-very-secret-key").list_batches()
    server = redis.Redis.from_url(broker)
    names = [name.decode() for name in server.scan_iter(f"{settings.CACHE_KEY_PREFIX}:ratelimit:*")]
    assert names and all("sk-ant" not in name for name in names)
    for name in names:
        members = server.zrange(name, 0, -1)
        assert all(isinstance(member, bytes) and b"sk-ant" not in member for member in members)


def test_without_redis_the_call_goes_ahead(three_a_minute, settings, caplog):
    ratelimit.client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    try:
        client_for(listing).list_batches()
    finally:
        ratelimit.client.cache_clear()
    assert "Rate limiter unavailable" in caplog.text
