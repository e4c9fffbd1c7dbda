"""Checking a 100,000-request (~100 MB) JSONL file, against a bare orjson-per-line loop over the
same file, all in one run and interleaved:

- anchor: `python -c "for line in open(path, 'rb'): orjson.loads(line)"`, a whole process;
- validatebatch: `manage.py validatebatch path`, a whole process, with its peak RSS;
- upload: the file posted over HTTP to the upload page of a running dashboard (runserver and a
  Celery worker, as `make run` starts them) as the page's script sends it (the request's body),
  timed from the first byte sent to the moment the finished report is stored (polled twenty
  times a second).

Prints each run and the medians, and the ratios of the medians to the anchor's.

    .venv/bin/python bench/bench_intake.py [runs] [requests]      # default: 5 runs, 100,000
"""

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: psycopg only when the database is PostgreSQL
    import sqlite3

    import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TEXT = "Summarise the following passage in one sentence. " * 18  # about 1 KB a request


def write_file(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            params = {"model": "claude-haiku-4-5", "max_tokens": 256,
                      "messages": [{"role": "user", "content": f"{number}: {TEXT}"}]}  # fmt: skip
            handle.write(json.dumps({"custom_id": f"req-{number}", "params": params}) + "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_idle(timeout: float = 60.0) -> None:
    """Until the kernel has written back what earlier runs wrote, and the machine's processors
    are at least 90% idle over half a second (or `timeout`): what one run leaves behind must not
    be timed as part of the next. Each upload writes about 200 MB (the file, then the batch's
    body) and 100,000 rows of request index; on this machine's disk, past about 500 MB of dirty
    pages the kernel makes every writer wait, and every later run's POST took twice as long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _unwritten_bytes() > 64 * 1024 * 1024:
        time.sleep(0.25)

    def busy_and_total() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        idle = values[3] + values[4]  # idle and iowait
        return sum(values) - idle, sum(values)

    if not os.path.exists("/proc/stat"):
        time.sleep(2)
        return
    while time.monotonic() < deadline:
        busy_before, total_before = busy_and_total()
        time.sleep(0.5)
        busy, total = busy_and_total()
        if (busy - busy_before) <= 0.1 * max(1, total - total_before):
            return


def _unwritten_bytes() -> int:
    """Dirty and under-writeback page cache, from /proc/meminfo (0 where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
    except OSError:
        return 0
    return sum(int(fields[name].split()[0]) * 1024 for name in ("Dirty", "Writeback"))


def timed(argv: list[str], env: dict) -> tuple[float, float, str]:
    """Wall time and peak RSS (MB, the process or its largest child) of one whole process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip
    assert process.stdout is not None  # stdout=PIPE above
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[1:3]} failed:\n{output[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, output


class Dashboard:
    """runserver, a Celery worker and Redis on a fresh VAR_DIR, as `make run` starts them."""

    def __init__(self, var_dir: Path) -> None:
        self.port = free_port()
        redis_port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "VAR_DIR": str(var_dir),
            "LOG_LEVEL": "WARNING",
            "PORT": str(self.port),
            "REDIS_URL": os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{redis_port}/0",
        }
        if "DATABASE_URL" not in os.environ:
            self.env["DATABASE_URL"] = f"sqlite:///{var_dir}/bench.sqlite3"
        self.processes: list[subprocess.Popen[bytes]] = []
        if "REDIS_URL" not in os.environ:
            sys.path.insert(0, str(ROOT))
            from dashboard.supervisor import embedded_redis_argv

            argv = embedded_redis_argv(redis_port, var_dir / "redis")
            argv[argv.index("--save") + 1] = ""
            self._start(argv)
        run = [PYTHON, "manage.py"]
        subprocess.run([*run, "migrate", "-v", "0"], cwd=ROOT, env=self.env, check=True)
        subprocess.run(
            [*run, "shell", "-c", "from django.contrib.auth import get_user_model; "
             "users = get_user_model().objects; users.filter(username='bench').exists() or "
             "users.create_superuser('bench', password='bench-pw-12345')"],
            cwd=ROOT, env=self.env, check=True,
        )  # fmt: skip
        self._start([*run, "runserver", f"127.0.0.1:{self.port}", "--noreload"])
        self._start([PYTHON, "-m", "celery", "-A", "dashboard", "worker", "--loglevel=WARNING",
                     "--concurrency=2", "--without-gossip", "--without-mingle"])  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_until_healthy()
        subprocess.run(
            [*run, "shell", "-c", "from batches.workspaces import ensure_sandbox; "
             "w = ensure_sandbox(); w.members.add(1)"],
            cwd=ROOT, env=self.env, check=True,
        )  # fmt: skip

    def _start(self, argv: list[str]) -> None:
        self.processes.append(
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def _wait_until_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit("The dashboard did not come up.")

    def stop(self) -> None:
        for process in reversed(self.processes):
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        sys.exit("A page of the dashboard has no CSRF token.")
    return match.group(1)


def upload_once(dashboard: Dashboard, path: Path) -> tuple[float, float]:
    """From the first byte of the upload to the stored report, polled twenty times a second;
    and how long the POST itself took."""
    import httpx

    with httpx.Client(base_url=dashboard.base, timeout=600) as http:
        login = http.get("/login/")
        token = _csrf_token(login.text)
        http.post("/login/", data={"username": "bench", "password": "bench-pw-12345",
                                   "csrfmiddlewaretoken": token})  # fmt: skip
        page = http.get("/w/sandbox/upload/")
        token = _csrf_token(page.text)
        started = time.perf_counter()
        started_at = time.time()
        with path.open("rb") as handle:  # as the upload page's script sends it
            response = http.post(
                "/w/sandbox/upload/?oversize=split",
                content=handle,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(path.stat().st_size),
                    "X-CSRFToken": token,
                    "X-Upload-Filename": path.name,
                },
            )
        posted = time.perf_counter() - started
        if response.status_code != 201:
            sys.exit(f"The upload answered {response.status_code}.")
        location = response.json()["location"]
        key = location.rstrip("/").rsplit("/", 1)[-1]
        while True:
            state = _state(dashboard, key)
            if state not in ("checking", None):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    if state != "ready":
        sys.exit(f"The upload ended {state}.")
    _wait_for_index(dashboard, key)
    stamps = [
        _query(dashboard, sql, key)
        for sql in (
            "SELECT created_at FROM batches_submission WHERE key = %s",
            "SELECT check_started_at FROM batches_submission WHERE key = %s",
            "SELECT validated_at FROM batches_submission WHERE key = %s",
        )
    ]
    created, checking, checked = (_epoch(value) - started_at for value in stamps)
    print(f"  upload: stored at {created:.2f} s, check started {checking:.2f} s, "
          f"report at {checked:.2f} s, seen at {elapsed:.2f} s")  # fmt: skip
    return elapsed, posted


def _epoch(value: datetime | str) -> float:
    """A timestamp column as seconds since the epoch (PostgreSQL gives datetimes, SQLite text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


def _wait_for_index(dashboard: Dashboard, key: str) -> None:
    """Until the worker has written the upload's index of requests (just after the report, not
    timed), so that this run's work does not overlap the next run's measurements."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _query(dashboard, "SELECT requests_indexed_at FROM batches_submission WHERE key = %s",
                  key):  # fmt: skip
            return
            return
        time.sleep(0.1)
    sys.exit("The worker never wrote the upload's index of requests.")


_connection: "sqlite3.Connection | psycopg.Connection | None" = None


def _state(dashboard: Dashboard, key: str) -> str | None:
    """The submission's state, read from the database as the page would show it."""
    return _query(dashboard, "SELECT state FROM batches_submission WHERE key = %s", key)


def _query(dashboard: Dashboard, sql: str, key: str) -> Any:
    """One column of the submission with this key, or None."""
    global _connection
    url = dashboard.env["DATABASE_URL"]
    if url.startswith("sqlite"):
        import sqlite3

        _connection = _connection or sqlite3.connect(url.removeprefix("sqlite:///"))
        row = _connection.execute(sql.replace("%s", "?"), (key.replace("-", ""),)).fetchone()
        _connection.commit()
    else:
        import psycopg

        _connection = _connection or psycopg.connect(url, autocommit=True)
        row = _connection.execute(sql, (key,)).fetchone()
    return row[0] if row else None


def main(runs: int, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"requests-{count}.jsonl"
        write_file(path, count)
        size = path.stat().st_size
        print(f"{count:,} requests, {size / 1e6:,.1f} MB; {runs} runs, interleaved\n")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings", "VAR_DIR": tmp,
               "LOG_LEVEL": "WARNING"}  # fmt: skip
        anchor_code = "import orjson, sys\nfor line in open(sys.argv[1], 'rb'): orjson.loads(line)"
        dashboard = Dashboard(Path(tmp) / "dashboard")
        anchors, checks, uploads, rss = [], [], [], []
        try:
            for run in range(1, runs + 1):
                wait_until_idle()
                anchor, _, _ = timed([PYTHON, "-c", anchor_code, str(path)], env)
                wait_until_idle()
                check, peak, output = timed([PYTHON, "manage.py", "validatebatch", str(path)], env)
                if f"{count:,} requests ready" not in output:
                    sys.exit(output[-2000:])
                wait_until_idle()
                upload, posted = upload_once(dashboard, path)
                anchors.append(anchor)
                checks.append(check)
                uploads.append(upload)
                rss.append(peak)
                print(f"run {run}: anchor {anchor:.2f} s · validatebatch {check:.2f} s "
                      f"({peak:.0f} MB peak) · upload to report {upload:.2f} s "
                      f"(the POST {posted:.2f} s)")  # fmt: skip
        finally:
            dashboard.stop()
    anchor, check, upload = (statistics.median(values) for values in (anchors, checks, uploads))
    print(f"\nmedians: anchor {anchor:.2f} s, validatebatch {check:.2f} s, upload {upload:.2f} s")
    print(f"validatebatch / anchor = {check / anchor:.2f}x (target at most 2.0x), "
          f"peak RSS {max(rss):.0f} MB (target under 200 MB)")  # fmt: skip
    print(f"upload to report / anchor = {upload / anchor:.2f}x (target at most 3.0x)")
    print(f"validatebatch: {size / check / 1e6:,.0f} MB/s; upload: {size / upload / 1e6:,.0f} MB/s")


if __name__ == "__main__":
    args = [int(value) for value in sys.argv[1:]]
    main(args[0] if args else 5, args[1] if len(args) > 1 else 100_000)
