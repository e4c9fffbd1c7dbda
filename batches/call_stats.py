"""Counts of the API calls every process makes, by endpoint and status, with their latency in
histogram buckets and the retries: kept in Redis (one hash), so the `/metrics` page of any web
process reports the calls of every worker on every machine. Recording is one pipelined round
trip; when Redis cannot answer, the call goes on uncounted."""

import logging
import re
from urllib.parse import urlsplit

import redis
from django.conf import settings

from batches.ratelimit import client

logger = logging.getLogger(__name__)

# Upper bounds of the latency buckets, in seconds (Prometheus' `le`); +Inf is the count.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_ID = re.compile(r"/v1/messages/batches/[^/]+")


def _key() -> str:
    return f"{settings.CACHE_KEY_PREFIX}:api-calls"


def endpoint(method: str, url: str) -> str:
    """`GET /v1/messages/batches/{id}`: the call's route, its ids taken out (a bounded label)."""
    path = urlsplit(url).path or "/"
    start = path.find("/v1/")  # after a base URL's own path (the emulator's /emulator)
    path = _BATCH_ID.sub("/v1/messages/batches/{id}", path[start:]) if start >= 0 else "/other"
    return f"{method.upper()} {path}"[:80]


def record(method: str, url: str, status: int | str, seconds: float) -> None:
    """One finished call: `status` is the HTTP status, or the error type when none came back."""
    route = endpoint(method, url)
    fields = [f"calls|{route}|{status}", f"count|{route}"]
    fields += [f"le|{route}|{bound}" for bound in BUCKETS if seconds <= bound]
    try:
        pipe = client().pipeline(transaction=False)
        for field in fields:
            pipe.hincrby(_key(), field, 1)
        pipe.hincrbyfloat(_key(), f"sum|{route}", seconds)
        pipe.execute()
    except redis.RedisError as error:
        logger.debug("API call not counted: %s", error)


def record_retry(method: str, url: str) -> None:
    try:
        client().hincrby(_key(), f"retries|{endpoint(method, url)}", 1)
    except redis.RedisError as error:
        logger.debug("API retry not counted: %s", error)


def read() -> dict[str, float]:
    """Every counter, by field; empty when Redis cannot answer."""
    try:
        raw = client().hgetall(_key())
    except redis.RedisError as error:
        logger.warning("API call counts unavailable: %s", error)
        return {}
    return {
        (name.decode() if isinstance(name, bytes) else name): float(value)
        for name, value in raw.items()
    }
