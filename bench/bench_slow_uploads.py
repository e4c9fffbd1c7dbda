"""Slow uploads against the production web process: fifteen uploads by one logged-in submitter,
each declaring 10 MB and sending one byte every 5 seconds, while `/healthz` and a page are
probed; the anchor is the same probes with no upload, in the same run, interleaved.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/bench_slow_uploads.py [seconds] [rounds]

Starts the Procfile's `web` line as production runs it (DEBUG off, 3 workers x 8 threads, the
default floors), then for each round probes for `seconds` (default 30) with no upload, then for
`seconds` with the fifteen slow uploads on their way. Every loop is bounded by the duration and
stops by itself; traffic goes to 127.0.0.1 only. Prints per phase the probes' p50, p95 and
worst latency, how many took over a second or failed, and what the uploads were answered.
"""

import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django
import httpx

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from bench.data import database_url, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
UPLOADS = 15


def populate() -> tuple[str, str]:
    """A submitter's session cookie and the upload page's path."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    from batches.workspaces import create_workspace

    user = get_user_model().objects.create_user("submitter")
    workspace = create_workspace("Bench", "https://api.example.test", "sk-ant-bench-slow-0000",
                                 members=[(user, "submitter")])  # fmt: skip
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key), f"/w/{workspace.slug}/upload/"


def start_web(port: int, scratch: Path) -> subprocess.Popen:
    env = {
        **{name: value for name, value in os.environ.items() if name != "DEBUG"},
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DEBUG": "false",
        "PORT": str(port),
        "SITE_URL": f"http://127.0.0.1:{port}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "60",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": f"bench-slow-{os.getpid()}",
        "STATIC_ROOT": str(scratch / "static"),
        "VAR_DIR": str(scratch / "var"),
        "LOG_LEVEL": "ERROR",
    }
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True, timeout=300)  # fmt: skip
    line = next(
        line.partition(":")[2].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    command = line.replace("gunicorn ", f"{shlex.quote(sys.executable)} -m gunicorn ", 1)
    return subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=ROOT, env=env,
                            start_new_session=True)  # fmt: skip


def slow_upload(
    port: int,
    path: str,
    cookie: str,
    token: str,
    deadline: float,
    answers: list[tuple[str, float]],
) -> None:
    """Declares 10 MB, sends a byte every 5 s until answered or the phase ends."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path}?name=slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
            f"X-CSRFToken: {token}\r\nX-Upload-Filename: slow.jsonl\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n".encode()
        )
        connection.settimeout(5)
        answer = b""
        while time.monotonic() < deadline:
            try:
                connection.sendall(b"{")
                answer += connection.recv(4096)
                break
            except TimeoutError:
                continue
            except OSError:
                break
    status = answer.split(b" ", 2)[1].decode() if answer.count(b" ") >= 2 else "no answer"
    answers.append((status, time.monotonic() - began))


def probe(
    base: str,
    cookie: str,
    deadline: float,
    latencies: dict[str, list[float]],
    failures: list[str],
) -> None:
    with httpx.Client(base_url=base, timeout=5, cookies={"sessionid": cookie}) as client:
        while time.monotonic() < deadline:
            for path in ("/healthz", "/"):
                began = time.perf_counter()
                try:
                    response = client.get(path)
                    took = (time.perf_counter() - began) * 1000
                    latencies[path].append(took)
                    if response.status_code != 200 or took > 1000:
                        failures.append(f"{path}: {response.status_code} in {took:.0f} ms")
                except httpx.HTTPError as error:
                    failures.append(f"{path}: {error!r}")
            time.sleep(0.2)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def phase(
    base: str, port: int, cookie: str, path: str, token: str, seconds: float, *, uploads: int
) -> dict:
    deadline = time.monotonic() + seconds
    latencies: dict[str, list[float]] = {"/healthz": [], "/": []}
    failures: list[str] = []
    answers: list[tuple[str, float]] = []
    threads = [
        threading.Thread(target=slow_upload, args=(port, path, cookie, token, deadline, answers))
        for _ in range(uploads)
    ]
    for thread in threads:
        thread.start()
    probe(base, cookie.split(";")[0].removeprefix("sessionid="), deadline, latencies, failures)
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return {"latencies": latencies, "failures": failures, "answers": answers}


def report(name: str, found: dict) -> dict[str, float]:
    medians = {}
    for path, values in found["latencies"].items():
        medians[path] = statistics.median(values)
        print(f"  {name:>14} {path:<8} n={len(values):3d}  p50 {statistics.median(values):6.1f} ms"
              f"  p95 {p95(values):6.1f} ms  worst {max(values):7.1f} ms")  # fmt: skip
    print(f"  {name:>14} over 1 s or failed: {len(found['failures'])} {found['failures'][:3]}")
    if found["answers"]:
        statuses: dict[str, list[float]] = {}
        for status, took in found["answers"]:
            statuses.setdefault(status, []).append(took)
        print("  " + " " * 14 + " uploads answered: " + ", ".join(
            f"{len(times)} x {status} (after {min(times):.1f} to {max(times):.1f} s)"
            for status, times in sorted(statuses.items())))  # fmt: skip
    return medians


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    web = None
    try:
        session, path = populate()
        connection.close()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        scratch = Path(tempfile.mkdtemp(prefix="bench-slow-"))
        web = start_web(port, scratch)
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        with httpx.Client(base_url=base, cookies={"sessionid": session}) as client:
            page = client.get(path)
            found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert found is not None, f"the upload page answered {page.status_code}"
            token = found.group(1)
            cookie = f"sessionid={session}; csrftoken={client.cookies['csrftoken']}"
        print(f"The Procfile's web line (3 workers x 8 threads, DEBUG off) on {connection.vendor};"
              f" {UPLOADS} uploads of 10 MB by one submitter, a byte every 5 s; "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        for number in range(rounds):
            print(f"round {number + 1}")
            quiet = report("no upload", phase(base, port, cookie, path, token, seconds, uploads=0))
            attacked = phase(base, port, cookie, path, token, seconds, uploads=UPLOADS)
            slow = report(f"{UPLOADS} slow uploads", attacked)
            print(f"  medians under the slow uploads: /healthz "
                  f"{slow['/healthz'] / quiet['/healthz']:.2f}x, the page "
                  f"{slow['/'] / quiet['/']:.2f}x the same with no upload; "
                  f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    finally:
        if web is not None:
            os.killpg(web.pid, 15)
            web.wait(timeout=30)
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
