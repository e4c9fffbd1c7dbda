"""One rate limiter per API key, shared by every web process and worker through Redis.

The API's lowest tier allows 50 requests a minute per organisation, and a team's own scripts share
that budget with the dashboard. So every call to a workspace's API first takes a slot here: at
most `API_RATE_LIMIT_PER_MINUTE` calls in any 60 s, counted in a sliding log (a sorted set of call
times, on Redis's clock so machines with skewed clocks agree). A caller without a slot waits until
the oldest call in the log is a minute old.

The API can also say to slow down: a 429's `retry-after`, or `anthropic-ratelimit-requests-
remaining: 0` with the time it resets. Either puts a hold on the key, and no process calls with it
until the hold ends.

Keys are named by a hash of the API key, never the key. The limiter saves the team's budget; it is
not what keeps the API safe, so when Redis cannot be reached the call goes ahead (and is logged).

This module imports no model.
"""

import hashlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache

import redis
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000

# KEYS: the log of recent calls (a sorted set scored by time in ms), the hold (a hash: `until`, a
# time in ms, and `owner`, the client that was told to wait, which waits through its own backoff).
# ARGV: the limit, the window in ms, a unique member for this call, the asking client.
# Returns 0 with a slot taken, else how many ms to wait before asking again.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local held = redis.call('HMGET', KEYS[2], 'until', 'owner')
local hold = tonumber(held[1] or '0')
if hold > now and (ARGV[4] == '' or held[2] ~= ARGV[4]) then
  return hold - now
end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

# KEYS: the hold. ARGV: ms from now, the client told to wait. A hold only ever moves later.
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if until_ms > current then
  redis.call('HSET', KEYS[1], 'until', until_ms, 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return until_ms
"""


class RateLimitWait(Exception):
    """A slot would take longer than API_RATE_LIMIT_MAX_WAIT_SECONDS to come free."""

    def __init__(self, seconds: float):
        super().__init__(
            f"The dashboard's own rate limit for this key is spent (at most "
            f"{settings.API_RATE_LIMIT_PER_MINUTE} calls a minute); the next call could go in "
            f"{seconds:.0f} s."
        )
        self.seconds = seconds


@cache
def client() -> redis.Redis:
    """This process's Redis client for the API's bookkeeping (the rate limit here, the call
    counts in batches.call_stats), with short timeouts: Redis slow or down never holds a call.
    redis-py's pool opens new connections in a forked child, so one client per process is safe."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


@sensitive_variables("api_key")
def identity(api_key: str) -> str:
    """What names a key in Redis: a hash, so the key itself is never stored there."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _keys(key_id: str) -> tuple[str, str]:
    base = f"{settings.CACHE_KEY_PREFIX}:ratelimit:{key_id}"
    return f"{base}:log", f"{base}:hold"


def try_take(key_id: str, caller: str = "") -> float:
    """Take a slot for one call: 0.0 when taken, else the seconds to wait before asking again."""
    log, hold = _keys(key_id)
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    waited_ms = client().eval(_TAKE, 2, log, hold, limit, WINDOW_MS, secrets.token_hex(8), caller)
    return int(waited_ms) / 1000


def take(key_id: str, caller: str = "", sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait for a slot, then take it. Returns the seconds waited; raises RateLimitWait when the
    wait would pass API_RATE_LIMIT_MAX_WAIT_SECONDS. Goes ahead when Redis cannot answer."""
    waited = 0.0
    while True:
        try:
            wait = try_take(key_id, caller)
        except redis.RedisError as error:
            logger.warning("Rate limiter unavailable, calling anyway: %s", error)
            return waited
        if wait <= 0:
            return waited
        if waited + wait > settings.API_RATE_LIMIT_MAX_WAIT_SECONDS:
            raise RateLimitWait(wait)
        # A little jitter, so the processes that waited for the same slot do not all ask at once.
        wait += random.uniform(0, 0.05)
        sleep(wait)
        waited += wait


def hold(key_id: str, seconds: float, caller: str = "") -> None:
    """No call with this key before `seconds` from now (at most API_RETRY_MAX_WAIT_SECONDS), in
    any process but the caller's client, which waits through its own retry backoff."""
    longest = min(WINDOW_MS / 1000, settings.API_RETRY_MAX_WAIT_SECONDS)
    milliseconds = int(min(max(seconds, 0.0), longest) * 1000)
    if milliseconds <= 0:
        return
    try:
        client().eval(_HOLD, 1, _keys(key_id)[1], milliseconds, caller)
    except redis.RedisError as error:
        logger.warning("Rate limiter unavailable, no hold recorded: %s", error)


def seconds_until_reset(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """From the API's rate-limit headers: how long until requests may go again, when it says none
    are left; None when it says nothing of the sort."""
    if headers.get("anthropic-ratelimit-requests-remaining", "").strip() != "0":
        return None
    reset = headers.get("anthropic-ratelimit-requests-reset", "").strip()
    try:
        moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
    except ValueError:
        return 1.0  # none left, and no valid time given: a short pause
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
