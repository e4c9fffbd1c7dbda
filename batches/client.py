"""The one module that speaks HTTP to the Message Batches API.

Everything that talks to the API goes through `ApiClient`: it sends the version header, applies
timeouts, turns every failure into one `ApiError` that says whether a retry can help, retries those
with exponential backoff and jitter that honours `retry-after`, logs each error's `request-id`, and
streams results line by line. Every request first takes a slot from the key's rate limiter, shared
by all processes (batches.ratelimit), and tells it when the API asks to slow down. The key is sent
in a header and never logged.
"""

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, Self

import httpx
from django.conf import settings
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from batches import answers, call_stats, ratelimit
from batches.outbound_http import BlockedDestination, GuardedTransport
from foundations.betas import header as betas_header
from foundations.local_files import BinaryStream

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = {408, 409, 429, 500, 502, 503, 504, 529}
USER_AGENT = "batch-dashboard/0.1"


class ApiAccount(Protocol):
    """What a client is made for: a workspace (batches.models, a floor up), by its API's address
    and key."""

    @property
    def base_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...


def default_transport() -> httpx.BaseTransport:
    """The transport the API_TRANSPORT setting names (a dotted path to a function that makes
    one: the tests answer every call from the emulator in their own process), else httpx's own
    with every connection checked (batches.outbound)."""
    if not settings.API_TRANSPORT:
        return GuardedTransport()
    return import_string(settings.API_TRANSPORT)()


def _unsafe(error: BlockedDestination) -> "ApiError":
    return ApiError(str(error), error_type="unsafe_destination")


class ApiError(Exception):
    """A failed call: HTTP status (None when no answer came), the API's error type and message,
    the request id to quote to support, and whether trying again could help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str = "",
        request_id: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"{self.status} {self.error_type}".strip() if self.status else self.error_type]
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(request-id {self.request_id})")
        return " ".join(part for part in parts if part)

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def may_have_made_it(self) -> bool:
        """Whether a create that failed this way may still have made its batch: a timeout, a
        broken connection or a server error. A 4xx, and a 529 (overloaded, turned away at the
        door), mean nothing was created."""
        return self.status is None or (self.status >= 500 and self.status != 529)


def _retry_after_seconds(response: httpx.Response) -> float | None:
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def error_from_response(response: httpx.Response) -> ApiError:
    request_id = response.headers.get("request-id", "")
    error_type, message = "", ""
    try:
        body = json.loads(response.read())
        error_type = body["error"]["type"]
        message = body["error"]["message"]
        request_id = request_id or body.get("request_id") or ""
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code} with an unexpected body"
    return ApiError(
        message,
        status=response.status_code,
        error_type=error_type or "http_error",
        request_id=request_id,
        retryable=response.status_code in RETRYABLE_STATUSES or response.status_code >= 500,
        retry_after=_retry_after_seconds(response),
    )


class _WaitHonouringRetryAfter:
    """Exponential backoff with jitter, but never sooner than the server's `retry-after`."""

    def __init__(self, initial: float, maximum: float):
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self.maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        wait = self.backoff(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.maximum))
        return wait


def _log_retry(state: RetryCallState) -> None:
    # tenacity calls before_sleep once an attempt has its outcome; None only as the stubs allow.
    error = state.outcome.exception() if state.outcome else None
    # The retried call's method and path, when it was `_send_once` (the results stream is named
    # by its own function).
    named = {"attempt": ("POST", "/v1/messages/batches"),
             "open_stream": ("GET", "/v1/messages/batches/{id}/results")}  # fmt: skip
    fallback = named.get(getattr(state.fn, "__name__", ""), ("GET", "/other"))
    method, path = (*state.args, *fallback)[:2]
    call_stats.record_retry(str(method), str(path))
    logger.warning(
        "API call failed (attempt %d), retrying in %.1f s: %s",
        state.attempt_number,
        state.next_action.sleep if state.next_action else 0,
        error,
    )


def _chunks(stream: BinaryStream, size: int = 1 << 20) -> Iterator[bytes]:
    """A body streamed from storage a block at a time, so a 256 MB create never sits in memory."""
    while block := stream.read(size):
        yield block


@dataclass
class Page:
    data: list[dict[str, Any]]
    has_more: bool
    first_id: str | None
    last_id: str | None


class ApiClient:
    @sensitive_variables("api_key")
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        timeout = timeout or settings.API_TIMEOUT_SECONDS
        self.max_attempts = max_attempts or settings.API_MAX_ATTEMPTS
        self.sleep = sleep
        self.rate_key = ratelimit.identity(api_key)
        # Names this client to the limiter: a hold it caused does not make it wait twice.
        self.rate_caller = secrets.token_hex(8)
        try:
            self.http = httpx.Client(
                base_url=base_url.rstrip("/"),
                headers={
                    "x-api-key": api_key,
                    "anthropic-version": settings.ANTHROPIC_VERSION,
                    "user-agent": USER_AGENT,
                },
                # Connecting should be quick; a results stream may pause between chunks.
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                transport=transport or default_transport(),
            )
        except (httpx.InvalidURL, TypeError) as exc:
            # `from None`: httpx's frames (and their locals) stay out of error pages.
            raise ApiError(
                f"The workspace's API address is not valid ({exc}).", error_type="invalid_url"
            ) from None

    @classmethod
    @sensitive_variables("api_key")
    def for_workspace(cls, workspace: ApiAccount, **kwargs: Any) -> "ApiClient":
        return cls(workspace.base_url, workspace.api_key, **kwargs)

    @classmethod
    @contextmanager
    def using(
        cls, workspace: ApiAccount, client: "ApiClient | None" = None, **kwargs: Any
    ) -> Iterator["ApiClient"]:
        """The caller's client if it passed one (tests do), else a new one closed afterwards."""
        if client is not None:
            yield client
            return
        with cls.for_workspace(workspace, **kwargs) as own:
            yield own

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The retry policy ---------------------------------------------------------------------------
    def _retrying(self, attempts: int | None = None, *, unanswered_only: bool = False) -> Retrying:
        """Retries of what a retry can help; `unanswered_only`: not after a failure that may
        have reached the API (ApiError.may_have_made_it)."""

        def worth_retrying(error: BaseException) -> bool:
            return (
                isinstance(error, ApiError)
                and error.retryable
                and not (unanswered_only and error.may_have_made_it)
            )

        return Retrying(
            retry=retry_if_exception(worth_retrying),
            stop=stop_after_attempt(attempts or self.max_attempts),
            wait=_WaitHonouringRetryAfter(
                initial=settings.API_RETRY_INITIAL_WAIT_SECONDS,
                maximum=settings.API_RETRY_MAX_WAIT_SECONDS,
            ),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )

    # The shared rate limit -----------------------------------------------------------------------
    def _take_slot(self) -> None:
        try:
            ratelimit.take(self.rate_key, self.rate_caller, self.sleep)
        except ratelimit.RateLimitWait as wait:
            raise ApiError(str(wait), error_type="rate_limited", retry_after=wait.seconds) from None

    def _note_limits(self, response: httpx.Response) -> None:
        """Hold every process's calls with this key when the API says to slow down."""
        if response.status_code == 429:
            ratelimit.hold(self.rate_key, _retry_after_seconds(response) or 1.0, self.rate_caller)
        elif (seconds := ratelimit.seconds_until_reset(response.headers)) is not None:
            # No retry is coming to wait through: this client holds too.
            ratelimit.hold(self.rate_key, seconds)

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self._take_slot()
        started, status = time.monotonic(), "no_answer"
        try:
            response = self.http.request(method, path, **kwargs)
            status = str(response.status_code)
        except httpx.TimeoutException as exc:
            raise ApiError(
                f"The API did not answer in time ({type(exc).__name__}).",
                error_type="timeout",
                retryable=True,
            ) from None
        except BlockedDestination as exc:
            raise _unsafe(exc) from None
        except httpx.TransportError as exc:
            raise ApiError(
                f"Could not reach the API: {exc}", error_type="connection_error", retryable=True
            ) from None
        except httpx.InvalidURL as exc:
            # Raised from inside httpx, whose frames hold the request's headers: `from None`
            # keeps them (and the key among them) out of tracebacks and error pages.
            raise ApiError(
                f"The API's address is not valid: {exc}", error_type="invalid_url"
            ) from None
        finally:
            # Counted for /metrics (batches.call_stats), answered or not.
            call_stats.record(method, path, status, time.monotonic() - started)
        self._note_limits(response)
        if response.is_error:
            error = error_from_response(response)
            logger.info("API %s %s answered %s", method, path, error)
            raise error
        return response

    def request(self, method: str, path: str, *, attempts: int | None = None, **kwargs: Any) -> Any:
        """One JSON call, retried while the failure is one a retry can help."""
        return self._json(self._retrying(attempts)(self._send_once, method, path, **kwargs))

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                "The API answered with something that is not JSON.",
                status=response.status_code,
                error_type="invalid_response",
                request_id=response.headers.get("request-id", ""),
            ) from exc

    @staticmethod
    def _checked(check: Callable[[Any], dict], body: Any) -> dict:
        """The answer, once `check` (batches.answers) found it of the shape it names."""
        try:
            return check(body)
        except answers.AnswerError as error:
            raise ApiError(
                f"The API's answer could not be read: {error}", error_type="invalid_response"
            ) from None

    # The calls ----------------------------------------------------------------------------------
    def create_batch(
        self,
        open_body: Callable[[], Any],
        size: int,
        *,
        before_send: Callable[[], None] = lambda: None,
        find_existing: Callable[[], dict | None] = lambda: None,
        betas: list[str] | None = None,
    ) -> dict:
        """Create a batch from a body of `size` bytes that `open_body()` streams (from storage).

        Retried like every call, but never blindly: after a failure that may have made the batch
        anyway (a timeout, a 5xx; see ApiError.may_have_made_it), `find_existing()` looks for it
        before the next attempt, and what it finds is the answer. `before_send()` runs before
        each attempt (the caller records that an outcome is pending).
        """
        ambiguous = False

        def attempt() -> dict:
            nonlocal ambiguous
            if ambiguous:
                found = find_existing()
                if found is not None:
                    return found
            before_send()
            body = open_body()
            try:
                return self._json(
                    self._send_once(
                        "POST",
                        "/v1/messages/batches",
                        content=_chunks(body),
                        headers={
                            "content-type": "application/json",
                            "content-length": str(size),
                            **betas_header(betas),
                        },
                    )
                )
            except ApiError as error:
                ambiguous = error.may_have_made_it
                raise
            finally:
                body.close()

        return self._checked(answers.batch, self._retrying()(attempt))

    def create_message(self, body: bytes, *, betas: list[str] | None = None) -> dict:
        """One request answered at once (`POST /v1/messages`, not a batch): `body` is its params
        as JSON. Retried only when the API surely did not answer it (a refusal to take it, such
        as 429): a retry after a timeout could be billed twice."""
        headers = {"content-type": "application/json", **betas_header(betas)}
        return self._json(
            self._retrying(unanswered_only=True)(
                self._send_once, "POST", "/v1/messages", content=body, headers=headers
            )
        )

    def retrieve_batch(self, batch_id: str) -> dict:
        return self._checked(answers.batch, self.request("GET", f"/v1/messages/batches/{batch_id}"))

    def cancel_batch(self, batch_id: str) -> dict:
        answer = self.request("POST", f"/v1/messages/batches/{batch_id}/cancel")
        return self._checked(answers.batch, answer)

    def delete_batch(self, batch_id: str) -> dict:
        answer = self.request("DELETE", f"/v1/messages/batches/{batch_id}")
        return self._checked(answers.deleted, answer)

    def list_batches(
        self, *, limit: int = 20, after_id: str | None = None, before_id: str | None = None
    ) -> Page:
        params: dict[str, Any] = {"limit": limit}
        if after_id:
            params["after_id"] = after_id
        if before_id:
            params["before_id"] = before_id
        body = self._checked(
            answers.batch_list, self.request("GET", "/v1/messages/batches", params=params)
        )
        return Page(body["data"], body["has_more"], body.get("first_id"), body.get("last_id"))

    def iter_batch_pages(self, *, limit: int = 1000) -> Iterator[Page]:
        """Every page of the workspace's batches, newest first."""
        after_id = None
        while True:
            page = self.list_batches(limit=limit, after_id=after_id)
            yield page
            if not page.has_more or not page.last_id:
                return
            after_id = page.last_id

    def list_models(self) -> list[dict]:
        models, after_id = [], None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if after_id:
                params["after_id"] = after_id
            body = self._checked(
                answers.model_list, self.request("GET", "/v1/models", params=params)
            )
            models.extend(body["data"])
            if not body.get("has_more") or not body.get("last_id"):
                return models
            after_id = body["last_id"]

    def iter_results(self, results_url: str) -> Iterator[bytes]:
        """The raw lines of a results file, streamed: never the whole file in memory.

        Opening the stream is retried like any call; a stream cut off midway raises a retryable
        `ApiError`, and the caller starts over (ingestion is idempotent).
        """

        # The key goes with the request: never to a host other than the workspace's API.
        wanted = httpx.URL(results_url)
        if (wanted.scheme, wanted.host, wanted.port) != (
            self.http.base_url.scheme,
            self.http.base_url.host,
            self.http.base_url.port,
        ):
            raise ApiError(
                f"The results URL points to {wanted.scheme}://{wanted.host}, not to this "
                "workspace's API; it was not fetched.",
                error_type="foreign_results_url",
            )

        def open_stream() -> httpx.Response:
            request = self.http.build_request("GET", results_url)
            self._take_slot()
            started = time.monotonic()
            try:
                response = self.http.send(request, stream=True)
                # Until the stream's head: the time to first byte, as for every other call.
                call_stats.record(
                    "GET", results_url, response.status_code, time.monotonic() - started
                )
            except httpx.TimeoutException:
                raise ApiError("The results download timed out.", retryable=True) from None
            except BlockedDestination as exc:
                raise _unsafe(exc) from None
            except httpx.TransportError as exc:
                raise ApiError(f"Could not reach the API: {exc}", retryable=True) from None
            self._note_limits(response)
            if response.is_error:
                error = error_from_response(response)
                response.close()
                raise error
            if not response.is_success:
                # A redirect is not followed: the key would go with it to wherever it points.
                target = response.headers.get("location", "")[:200] or "elsewhere"
                response.close()
                raise ApiError(
                    f"The results URL answered {response.status_code}, a redirect to {target}; "
                    "it was not followed, and nothing of it is stored as the results.",
                    status=response.status_code,
                    error_type="unexpected_redirect",
                )
            return response

        response = self._retrying()(open_stream)
        try:
            # Split on b"\n" only, on bytes: httpx's iter_lines also splits text on U+2028 and
            # friends, which may appear raw inside an answer. The lines stay the API's bytes.
            buffer = bytearray()
            for chunk in response.iter_bytes():
                searched = len(buffer)
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", max(start, searched))) != -1:
                    line = bytes(buffer[start:end]).rstrip(b"\r")
                    if line.strip():
                        yield line
                    start = end + 1
                del buffer[:start]
            if bytes(buffer).strip():
                yield bytes(buffer).rstrip(b"\r")
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise ApiError(
                f"The results stream broke off: {exc}",
                error_type="stream_error",
                retryable=True,
                request_id=response.headers.get("request-id", ""),
            ) from exc
        finally:
            response.close()
