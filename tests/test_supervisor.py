"""`make run`'s supervisor, started for real on free ports with its own var/ directory."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, found through /proc (no third-party package needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def health(port: int):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, None


@pytest.fixture
def supervisor_env(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        PORT=str(free_port()),
        EMBEDDED_REDIS_PORT=str(free_port()),
        SYNC_INTERVAL_SECONDS="3600",
    )
    return env


def start(env):
    return subprocess.Popen(
        [sys.executable, "-m", "dashboard.supervisor"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(process, condition, what: str, timeout: float):
    """Polls `condition` until it returns something true, and returns that; fails after
    `timeout` seconds, or as soon as the supervisor exits (with its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout} s")


def wait_healthy(process, port, timeout=90):
    def healthy():
        status, body = health(port)
        return body if status == 200 else None

    return wait_until(process, healthy, "the dashboard becoming healthy", timeout)


# What runs below the supervisor once everything has started, by a piece of each command line:
# the worker's pool (--concurrency=2) is two more processes with the worker's command line, which
# it forks seconds after /healthz first answers.
EVERYTHING = {"redis-server": 1, " runserver ": 1, " worker ": 3, " beat ": 1}


def everything_started(process, timeout=60) -> set[int]:
    """The processes below the supervisor, once each of EVERYTHING runs."""

    def below():
        commands = {pid: command_line(pid) for pid in descendants(process.pid)}
        running = {key: sum(key in line for line in commands.values()) for key in EVERYTHING}
        return set(commands) if all(running[key] >= EVERYTHING[key] for key in running) else None

    return wait_until(process, below, f"starting {EVERYTHING}", timeout)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


KEY = "sk-ant-api03-supervisor-secret-0123456789"


def environment_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_it_starts_everything_and_stops_every_process_on_a_signal(supervisor_env, sig):
    port = int(supervisor_env["PORT"])
    process = start({**supervisor_env, "ANTHROPIC_API_KEY": KEY})
    try:
        assert wait_healthy(process, port) == {"status": "ok", "database": "ok", "broker": "ok"}
        # The web server, the worker (and its pool), beat and Redis all run under it.
        below = everything_started(process)
        # The key made the real API's workspace, and then left every environment.
        for pid in {process.pid, *below}:
            assert KEY.encode() not in environment_of(pid), pid
            assert b"ANTHROPIC_API_KEY" not in environment_of(pid), pid
        process.send_signal(sig)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Stopped." in output
    assert "created with the key from ANTHROPIC_API_KEY" in output and KEY not in output
    assert not [pid for pid in below if alive(pid)]
    assert health(port) == (None, None)


def test_it_prints_a_generated_admin_password_once_and_it_works(supervisor_env):
    port = int(supervisor_env["PORT"])
    outputs = []
    for _ in range(2):
        process = start(supervisor_env)
        try:
            wait_healthy(process, port)
            process.send_signal(signal.SIGTERM)
            outputs.append(process.communicate(timeout=40)[0])
        finally:
            if process.poll() is None:
                process.kill()
    match = re.search(r"username: admin\s+password: (\S+)", outputs[0])
    assert match, outputs[0]
    password = match.group(1)
    assert len(password) >= 12
    assert "password:" not in outputs[1]  # shown only on the first run

    # The printed password logs in (checked against the database the supervisor made).
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django;django.setup();from django.contrib.auth import get_user_model;"
            f"print(get_user_model().objects.get(username='admin').check_password({password!r}))",
        ],
        cwd=settings.BASE_DIR,
        env={**supervisor_env, "DJANGO_SETTINGS_MODULE": "dashboard.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() == "True", check.stderr
