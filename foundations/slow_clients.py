"""Slow clients cannot hold the web process: request bodies that arrive too slowly are cut off,
and only so many are received at once.

A threaded WSGI server (gunicorn's gthread, as the Procfile runs it) gives a request its thread
until the request's body is read, and a body can be sent a byte every few seconds. Fifteen such
uploads held all twelve threads of the old production setup, and `/healthz` timed out. Chosen
here, in the application rather than in a proxy (which a deployment may not have): three bounds
that no client can lift, whatever the server in front.

1. **A floor on the rate.** Every body is read through `GuardedInput`, which counts what
   arrives. A watchdog thread (one per process) looks at every body being received: in each
   window of `UPLOAD_RATE_WINDOW_SECONDS` a body must bring `MIN_UPLOAD_BYTES_PER_SECOND` times
   the window (or the rest of it). One that does not is cut off: the watchdog shuts the reading
   side of its socket, the blocked read returns at once, and the read raises `ClientTooSlow`
   (an `OSError`, which Django and the upload view treat as a broken upload), so the page says
   what happened and the thread is free again within one window.
2. **A cap per process** (`guard_bodies`, around the WSGI application): at most
   `BODIES_PER_PROCESS` bodies are received at once, so threads stay free for pages and
   `/healthz` however many uploads come; another body is answered 503 at once, unread.
3. **A cap per person** (`dashboard.middleware.UploadsPerPersonMiddleware`): at most
   `UPLOADS_PER_USER` uploads on their way for one login, counted in Redis across every process;
   another is answered 429 at once, unread.

A body refused before it is read would be drained by the server before it closes the
connection; the socket's reading side is shut first so that takes no time either.
"""

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from wsgiref.types import InputStream, StartResponse, WSGIApplication, WSGIEnvironment

from django.conf import settings

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

# Reads are passed to the server in pieces of this size, so the count the watchdog sees moves
# while a large read is under way (a server's read(n) blocks until all n bytes are there).
PIECE_BYTES = 64 * 1024
WATCH_EVERY_SECONDS = 0.5


class ClientTooSlow(OSError):
    """The body arrived slower than the floor and was cut off; the message says so."""


def was_cut_off(environ: WSGIEnvironment) -> bool:
    """Whether this request's body was cut off for arriving too slowly."""
    body = environ.get("dashboard.body")
    return body is not None and body.cut


def too_slow_message() -> str:
    rate = settings.MIN_UPLOAD_BYTES_PER_SECOND
    return (
        f"The upload arrived slower than {rate / 1024:,.0f} KB/s for "
        f"{settings.UPLOAD_RATE_WINDOW_SECONDS:g} seconds and was stopped, so it would not hold "
        "the server: check the connection and upload the file again."
    )


class GuardedInput:
    """A request's `wsgi.input`, counted as it is read and cut off by the watchdog when too
    slow. Reads return what the server's input returns (a short read only at the end)."""

    def __init__(self, raw: InputStream, length: int, sock: socket.socket | None) -> None:
        self.raw = raw
        self.length = length
        self.sock = sock
        self.received = 0
        self.cut = False
        self.started = time.monotonic()
        self.window_started = self.started
        self.window_received = 0
        # What else to keep alive while the body arrives (the per-person count's entry).
        self.on_progress: Callable[[], None] | None = None
        # Called once, when the whole body has arrived (it frees the process's slot).
        self.on_complete: Callable[[], None] | None = None

    @property
    def complete(self) -> bool:
        return self.received >= self.length

    def _check(self) -> None:
        if self.cut:
            raise ClientTooSlow(too_slow_message())

    def read(self, size: int = -1) -> bytes:
        self._check()
        # Never past the declared length: the server would wait for bytes that never come.
        remaining = self.length - self.received
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        pieces = []
        while wanted > 0:
            piece = self.raw.read(min(wanted, PIECE_BYTES))
            self._check()
            if not piece:
                break
            pieces.append(piece)
            self.received += len(piece)
            wanted -= len(piece)
        self._note_completion()
        return b"".join(pieces)

    def _note_completion(self) -> None:
        if self.complete and self.on_complete is not None:
            done, self.on_complete = self.on_complete, None
            done()

    def readline(self, size: int = -1) -> bytes:
        self._check()
        remaining = self.length - self.received
        if remaining <= 0:
            return b""
        limit = PIECE_BYTES if size is None or size < 0 else size
        line = self.raw.readline(min(limit, remaining))
        self._check()
        self.received += len(line)
        self._note_completion()
        return line

    def too_slow(self, now: float) -> bool:
        """Whether the window that just ended brought too little (and, if not, a new window)."""
        if now - self.window_started < settings.UPLOAD_RATE_WINDOW_SECONDS:
            return False
        brought = self.received - self.window_received
        needed = settings.MIN_UPLOAD_BYTES_PER_SECOND * (now - self.window_started)
        if brought < min(needed, self.length - self.window_received):
            return True
        self.window_started, self.window_received = now, self.received
        return False

    def cut_off(self) -> None:
        self.cut = True
        if self.sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self.sock.shutdown(socket.SHUT_RD)  # the blocked read returns at once


class Watchdog:
    """The process's one thread that looks at every body being received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: set[GuardedInput] = set()
        self.thread: threading.Thread | None = None

    def add(self, body: GuardedInput) -> None:
        with self.lock:
            self.bodies.add(body)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="slow-bodies", daemon=True)
                self.thread.start()

    def discard(self, body: GuardedInput) -> None:
        with self.lock:
            self.bodies.discard(body)

    def check(self, now: float) -> None:
        with self.lock:
            bodies = [body for body in self.bodies if not body.complete and not body.cut]
        for body in bodies:
            if body.too_slow(now):
                logger.warning(
                    "Cut off a request body at %s of %s bytes: slower than %s bytes/s",
                    body.received,
                    body.length,
                    settings.MIN_UPLOAD_BYTES_PER_SECOND,
                )
                body.cut_off()
            elif body.on_progress is not None:
                body.on_progress()

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_EVERY_SECONDS)
            try:
                self.check(time.monotonic())
            except Exception:  # the watchdog must outlive any one body's failure
                logger.exception("The slow-body watchdog failed a round")


watchdog = Watchdog()


def _declared_length(environ: WSGIEnvironment) -> int:
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def leave_unread(environ: WSGIEnvironment) -> None:
    """The body of a request refused before it is read is not drained either: the server would
    wait for all of it (at a slow client's pace) before it closed the connection."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)


def _busy(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    leave_unread(environ)
    message = "The dashboard is receiving as many uploads as it can at once: try again in a minute."
    body = ('{"message": "%s"}' % message).encode()  # noqa: UP031 (fixed text, no quotes)
    start_response(
        "503 Service Unavailable",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", "30"),
        ],
    )
    return [body]


def guard_bodies(application: WSGIApplication) -> WSGIApplication:
    """The WSGI application, with every request body counted and watched, and at most
    BODIES_PER_PROCESS received at once in this process."""
    slots = threading.BoundedSemaphore(settings.BODIES_PER_PROCESS)

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = _declared_length(environ)
        if not length:
            return application(environ, start_response)
        if not slots.acquire(blocking=False):
            return _busy(environ, start_response)
        body = GuardedInput(environ["wsgi.input"], length, environ.get("gunicorn.socket"))
        body.on_complete = slots.release
        environ["wsgi.input"] = environ["dashboard.body"] = body
        watchdog.add(body)
        try:
            return application(environ, start_response)
        finally:
            watchdog.discard(body)
            if body.on_complete is not None:  # the body never arrived whole
                body.on_complete = None
                slots.release()

    return guarded


# The per-person count, in Redis: a sorted set per login of its uploads on their way, each with
# the time its entry lapses (kept fresh while its body arrives, so a killed process's entries
# go by themselves). Checked and added in one script, so two uploads at once cannot both pass.
_ENTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class UploadsInFlight:
    """One login's uploads on their way, across every process (UPLOADS_PER_USER at most)."""

    def __init__(self, client: "redis.Redis", user_pk: int) -> None:
        self.client = client
        self.key = f"{settings.CACHE_KEY_PREFIX}:uploads-in-flight:{user_pk}"
        self.token = f"{threading.get_ident()}-{time.time_ns()}"
        self.lease = 3 * settings.UPLOAD_RATE_WINDOW_SECONDS
        self.renewed = 0.0

    def enter(self) -> bool:
        now = time.time()
        entered = self.client.eval(
            _ENTER, 1, self.key, now, settings.UPLOADS_PER_USER, now + self.lease, self.token,
            int(self.lease) + 1,
        )  # fmt: skip
        self.renewed = time.monotonic()
        return bool(entered)

    def keep(self) -> None:
        """Called by the watchdog while the body arrives: the entry is renewed now and then."""
        if time.monotonic() - self.renewed < self.lease / 3:
            return
        self.renewed = time.monotonic()
        self.client.zadd(self.key, {self.token: time.time() + self.lease}, xx=True)
        self.client.expire(self.key, int(self.lease) + 1)

    def leave(self) -> None:
        self.client.zrem(self.key, self.token)
