"""Helpers for test suites that use the emulator as their back end.

In-process, without a server (inside a `django_db` test; the WSGI app runs in the same thread
and on the same database connection):

    client = httpx.Client(base_url=BASE_URL, transport=httpx_transport())   # the dashboard's httpx
    sdk = sdk_client("sk-test-owner")                                         # the official SDK

Batches straight into the database, any size, in well under a second for thousands:

    batch = make_batch("sk-test-owner", 20_000, invalid_every=10)   # every 10th request errors
    with time_machine.travel(batch.created_at + timedelta(minutes=2), tick=False): ...

Faults for one key: `emulator.faults.set_key_faults("sk-test-owner", rate_429=1.0)`, or a key with
`fault-429` (or -500, -529, -slow, -cut, -expire) in it.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import httpx
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone

from emulator import processing
from emulator.faults import plan_for, workspace_of
from emulator.models import EXPIRY, EmulatedBatch

if TYPE_CHECKING:
    import anthropic

BASE_URL = "http://testserver/emulator"
HEADERS = {"anthropic-version": "2023-06-01"}


def wsgi_app() -> WSGIApplication:
    """The project's WSGI app for in-process calls inside a test's database transaction.

    Like Django's test client, it keeps the request signals from closing the database connection,
    which would end the test's transaction (and, on SQLite, close the test database).
    """
    handler = WSGIHandler()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = handler(environ, start_response)
            try:
                yield from response
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)

    return app


def httpx_transport() -> httpx.WSGITransport:
    """An `httpx` transport that answers from the emulator in this process."""
    return httpx.WSGITransport(app=wsgi_app())


# The paths of the requests `counting_transport` saw, in order: a test or benchmark that counts
# the dashboard's API calls sets API_TRANSPORT to it and clears this first.
CALLS: list[str] = []


def counting_transport() -> httpx.BaseTransport:
    """`httpx_transport()`, noting each request's path in CALLS."""
    inner = httpx_transport()

    class Counting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            CALLS.append(request.url.path)
            return inner.handle_request(request)

    return Counting()


def sdk_client(api_key: str, *, max_retries: int = 0, **options: Any) -> "anthropic.Anthropic":
    """The official `anthropic` SDK (a test-only dependency), pointed at the emulator in-process."""
    import anthropic
    import httpx2

    transport = httpx2.WSGITransport(app=wsgi_app())
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=BASE_URL,
        http_client=httpx2.Client(transport=transport),
        max_retries=max_retries,
        **options,
    )


def request_params(number: int, *, model: str = "claude-haiku-4-5", max_tokens: int = 64) -> dict:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"Question number {number}: what is {number}?"}],
    }


def make_batch(
    api_key: str, size: int, *, invalid_every: int = 0, prefix: str = "req"
) -> EmulatedBatch:
    """A batch of `size` requests created directly in the database, as a create call would.

    With `invalid_every=n`, every n-th request asks for an unknown model and will end `errored`.
    The batch honours the key's faults (a `fault-expire` key makes it run past its expiry).
    """
    requests = []
    for number in range(size):
        params = request_params(number)
        if invalid_every and number % invalid_every == invalid_every - 1:
            params["model"] = "claude-unknown-9"
        requests.append({"custom_id": f"{prefix}-{number}", "params": params})
    return processing.create_batch(
        workspace_of(api_key), requests, slow=plan_for(api_key).slow_batches
    )


def fill_workspace(api_key: str, count: int, *, active_every: int = 0) -> list[str]:
    """`count` batches of one request each, created ten seconds apart (oldest first), straight into
    the database: every `active_every`-th one still running for days, the rest ended. Returns the
    ids of the running ones. For tests and benchmarks of large workspaces."""
    now = timezone.now()
    workspace = workspace_of(api_key)
    rows, running = [], []
    for number in range(count):
        created = now - timedelta(seconds=10 * (count - number))
        active = bool(active_every) and number % active_every == active_every // 2
        batch_id = processing.random_id("msgbatch_")
        if active:
            running.append(batch_id)
        rows.append(
            EmulatedBatch(
                batch_id=batch_id,
                workspace=workspace,
                request_count=1,
                created_at=created,
                expires_at=created + EXPIRY,
                base_seconds=10 * 86400.0 if active else 0.0,
                seconds_per_request=0.0,
                cancel_seconds=0.0,
                # Stored as first seen ended, so that no read has to finalise it.
                ended_at=None if active else created,
                succeeded=0 if active else 1,
            )
        )
    EmulatedBatch.objects.bulk_create(rows, batch_size=1000)
    return running
