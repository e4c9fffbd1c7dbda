"""Slow clients cannot hold the web process (foundations/slow_clients.py): a body that arrives too
slowly is cut off, a process receives only so many bodies at once, a login has only so many
uploads on their way; and the production web process is the Procfile's `web` line."""

import contextlib
import io
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from batches.workspaces import create_workspace
from foundations import slow_clients
from tests.processes import free_port, shared_database_url, wait_for_http

ROOT = Path(settings.BASE_DIR)


# The guard on its own, over a real socket pair ------------------------------------------------


@pytest.fixture
def one_second_windows(settings):
    settings.UPLOAD_RATE_WINDOW_SECONDS = 1.0
    settings.MIN_UPLOAD_BYTES_PER_SECOND = 1000


def test_a_body_that_keeps_its_pace_is_read_whole(one_second_windows):
    sender, receiver = socket.socketpair()
    body = slow_clients.GuardedInput(receiver.makefile("rb"), 200_000, receiver)
    sender.sendall(b"x" * 200_000)
    assert body.read(300_000) == b"x" * 200_000 and body.complete
    assert not body.too_slow(time.monotonic() + 5)  # whole: nothing more is asked of it
    sender.close()
    receiver.close()


def test_a_body_slower_than_the_floor_is_cut_off_and_its_read_returns(one_second_windows):
    sender, receiver = socket.socketpair()
    body = slow_clients.GuardedInput(receiver.makefile("rb"), 10_000, receiver)
    sender.sendall(b"y" * 100)  # then nothing more: far below 1,000 bytes a second
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(body.read(10_000))
        except OSError as error:
            outcome.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    # Whether the reader is already blocked waiting for bytes that do not come, or not yet
    # reading, the cut ends its read at once.
    assert not body.too_slow(body.window_started + 0.5)  # the window is not over yet
    watchdog = slow_clients.Watchdog()
    watchdog.bodies.add(body)
    watchdog.check(body.window_started + 1.5)
    reader.join(timeout=10)
    assert body.cut and not reader.is_alive()
    [error] = outcome
    assert isinstance(error, slow_clients.ClientTooSlow)
    assert "slower than 1 KB/s for 1 seconds" in str(error)
    sender.close()
    receiver.close()


def test_a_body_that_brings_enough_in_each_window_goes_on(one_second_windows):
    body = slow_clients.GuardedInput(io.BytesIO(), 100_000, None)  # never read: only counted
    start = body.window_started
    body.received = 1_500
    assert not body.too_slow(start + 1.2)  # 1,500 bytes in 1.2 s: above 1,000 a second
    body.received = 1_900
    assert body.too_slow(start + 2.4)  # then 400 bytes in the next 1.2 s


def test_a_process_receives_only_so_many_bodies_at_once(settings):
    settings.BODIES_PER_PROCESS = 1
    inside, leave = threading.Event(), threading.Event()

    def application(environ, start_response):
        inside.set()
        leave.wait(10)
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    guarded = slow_clients.guard_bodies(application)

    def request(body: bytes, answers: list) -> None:
        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            answers.append(status)
            return lambda data: None  # WSGI's write(), which the application never calls

        environ = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        answers.append(b"".join(guarded(environ, start_response)))

    first: list = []
    holder = threading.Thread(target=request, args=(b"first", first))
    holder.start()
    inside.wait(10)
    second: list = []
    request(b"second", second)  # refused at once, while the first body is being received
    assert second[0] == "503 Service Unavailable" and b"try again in a minute" in second[1]
    leave.set()
    holder.join(10)
    assert first == ["200 OK", b"first"]
    third: list = []
    inside.clear()
    leave.set()
    request(b"third", third)  # the slot is free again
    assert third == ["200 OK", b"third"]


# The production web process: the Procfile's `web` line ----------------------------------------


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name} line in the Procfile")


@pytest.fixture
def production_web(transactional_db, tmp_path, django_user_model):
    """The Procfile's web line in production mode (one process of eight threads, so six bodies
    at once; two-second windows), and a submitter's session and CSRF token."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    static_root = tmp_path / "static"
    env = {
        **{name: value for name, value in os.environ.items() if name != "DEBUG"},
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DEBUG": "false",
        "PORT": str(port),
        "WEB_WORKERS": "1",
        "WEB_THREADS": "8",
        "UPLOAD_RATE_WINDOW_SECONDS": "2",
        "SITE_URL": base,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
        "STATIC_ROOT": str(static_root),
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    # The line as a platform runs it: by a shell, with $PORT and the other variables set.
    command = procfile_line("web").replace(
        "gunicorn ", f"{shlex.quote(sys.executable)} -m gunicorn ", 1
    )
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        ["sh", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    user = django_user_model.objects.create_user("ada")
    workspace = create_workspace("Research", "https://api.example.com", "sk-ant-slow-1",
                                 members=[(user, "submitter")])  # fmt: skip
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    try:
        wait_for_http(f"{base}/healthz", web, timeout=60)
        upload_path = f"/w/{workspace.slug}/upload/"
        assert session.session_key is not None
        with httpx.Client(base_url=base, cookies={"sessionid": session.session_key}) as client:
            page = client.get(upload_path)
            assert page.status_code == 200, page.text[:500]
            found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert found is not None, page.text[:500]
            token = found.group(1)
            cookie = f"sessionid={session.session_key}; csrftoken={client.cookies['csrftoken']}"
        yield base, port, upload_path, cookie, token
    finally:
        web.terminate()
        web.wait(timeout=30)
        log.close()


def slow_upload(port: int, path: str, cookie: str, token: str, answers: list, size=10_000_000):
    """An upload as the page's script sends it, declaring `size` bytes and sending one byte
    every half second; what the server answered (status line and body) goes to `answers`."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(
            f"POST {path}?name=slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Cookie: {cookie}\r\nX-CSRFToken: {token}\r\nX-Upload-Filename: slow.jsonl\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        connection.settimeout(0.5)
        received = b""
        for _ in range(240):  # two minutes at most
            with contextlib.suppress(OSError):  # the server stopped reading: its answer may be in
                connection.sendall(b"{")
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    answers.append(received.decode("utf-8", "replace"))


@pytest.mark.integration
def test_fifteen_slow_uploads_leave_the_procfiles_web_process_answering(production_web):
    base, port, path, cookie, token = production_web
    answers: list[str] = []
    uploads = [
        threading.Thread(target=slow_upload, args=(port, path, cookie, token, answers))
        for _ in range(15)
    ]
    for upload in uploads:
        upload.start()
    # While they trickle in: the health check and a page answer. (A bound on waiting, not a
    # timing: with every thread held, these would not answer at all.)
    for _ in range(6):
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        page = httpx.get(f"{base}/login/", timeout=10)
        assert page.status_code == 200
        time.sleep(0.5)
    for upload in uploads:
        upload.join(timeout=120)
    statuses = sorted(answer.split(" ", 2)[1] if answer else "none" for answer in answers)
    # Two are received (the login's cap) until each falls below the floor and is cut off,
    # with a page that says so; the other thirteen are refused at once, unread: by the login's
    # cap (429), or by the process's while six bodies are being received at once (503).
    assert statuses.count("400") == 2 and statuses.count("429") + statuses.count("503") == 13
    assert "429" in statuses, statuses
    for answer in answers:
        expected = {
            "400": "slower than 8 KB/s for 2 seconds and was stopped",
            "429": "You have 2 uploads on their way already: wait for one to finish",
            "503": "receiving as many uploads as it can at once: try again in a minute",
        }[answer.split(" ", 2)[1]]
        assert expected in answer


def test_the_procfile_and_the_readmes_production_table_say_the_same():
    readme = (ROOT / "README.md").read_text()
    for name in ("web", "worker", "beat"):
        row = re.search(rf"^\| {name} \| `([^`]+)` \|$", readme, re.MULTILINE)
        assert row is not None, f"no {name} row in the README's production table"
        assert row.group(1) == procfile_line(name)
