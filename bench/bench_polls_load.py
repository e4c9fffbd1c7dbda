"""Many viewers polling at once: 50 logged-in viewers, each polling the batch list and the
header's counter once a second (about 100 requests a second), on gunicorn with 2 workers x 4
threads, against `/healthz` probed under the same load in the same run (the anchor).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/bench_polls_load.py [seconds] [rounds]

Creates a test database with one workspace of 10,000 batches (a few running) and 50 sessions,
starts gunicorn on it, lets each viewer load its regions once (to learn their fingerprints, as a
page does), then for `seconds` (default 20) sends each viewer's two polls every second with the
fingerprints it holds, while a probe asks `/healthz` ten times a second. Every request loop is
bounded by the duration and stops by itself; traffic goes to 127.0.0.1 only. `rounds` (default 2)
repeats the measurement. Prints per round the polls' p50 and p95, the probe's p95, their ratio,
the request rate reached and every error.
"""

import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
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
VIEWERS = 50
BATCHES = 10_000
HX = {"HX-Request": "true"}


def populate() -> list[str]:
    """The batches, and one session cookie value per viewer."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    from batches.workspaces import create_workspace
    from bench.data import fill_batches

    viewers = [get_user_model().objects.create_user(f"viewer{n}") for n in range(VIEWERS)]
    workspace = create_workspace("Bench", "https://api.example.test", "sk-ant-bench-load-0000",
                                 members=viewers)  # fmt: skip
    fill_batches(workspace, BATCHES)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if connection.vendor == "postgresql" else "PRAGMA optimize")
    cookies: list[str] = []
    for viewer in viewers:
        session = SessionStore()
        session[SESSION_KEY] = str(viewer.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = viewer.get_session_auth_hash()
        session.create()
        cookies.append(str(session.session_key))
    return cookies


def start_gunicorn(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "60",
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "CACHE_KEY_PREFIX": f"bench-load-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip


def fingerprint(body: str) -> str:
    found = re.search(r'hx-vals=\'\{"v": "([^"]*)"\}\'', body)
    return found.group(1) if found else ""


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


async def viewer(
    client: httpx.AsyncClient,
    cookie: str,
    deadline: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    headers = {**HX, "Cookie": f"sessionid={cookie}"}
    held: dict[str, str] = {}
    for path in ("/", "/poll/"):
        response = await client.get(path, headers=headers)
        held[path] = fingerprint(response.text)
    await asyncio.sleep(random.uniform(0, 1))  # viewers open their pages at different moments
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for path in ("/", "/poll/"):
            began = time.perf_counter()
            try:
                response = await client.get(path, params={"v": held[path]}, headers=headers)
            except httpx.HTTPError as error:
                errors.append(f"{path}: {error!r}")
                continue
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code == 200:
                held[path] = fingerprint(response.text) or held[path]
            elif response.status_code not in (204, 286):
                errors.append(f"{path}: HTTP {response.status_code}")
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


async def probe(
    client: httpx.AsyncClient, deadline: float, latencies: list[float], errors: list[str]
) -> None:
    while time.monotonic() < deadline:
        began = time.perf_counter()
        try:
            response = await client.get("/healthz")
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                errors.append(f"/healthz: HTTP {response.status_code}")
        except httpx.HTTPError as error:
            errors.append(f"/healthz: {error!r}")
        await asyncio.sleep(0.1)


async def one_round(
    base: str, cookies: list[str], seconds: float
) -> tuple[list[float], list[float], list[str], float]:
    limits = httpx.Limits(max_connections=VIEWERS + 5, max_keepalive_connections=VIEWERS + 5)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        polls: list[float] = []
        anchor: list[float] = []
        errors: list[str] = []
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(
            probe(client, deadline, anchor, errors),
            *(viewer(client, cookie, deadline, polls, errors) for cookie in cookies),
        )
        return polls, anchor, errors, time.monotonic() - began


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    server = None
    try:
        cookies = populate()
        connection.close()
        port = free_port()
        server = start_gunicorn(port)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        print(f"{BATCHES:,} batches on {connection.vendor}, {VIEWERS} viewers polling twice a "
              f"second each, gunicorn 2 workers x 4 threads")  # fmt: skip
        for number in range(rounds):
            polls, anchor, errors, took = asyncio.run(one_round(base, cookies, seconds))
            rate = (len(polls) + len(anchor)) / took
            print(f"round {number + 1}: {rate:.0f} requests/s; polls p50 "
                  f"{statistics.median(polls):.1f} ms, p95 {p95(polls):.1f} ms; /healthz p95 "
                  f"{p95(anchor):.1f} ms; polls' p95 = {p95(polls) / p95(anchor):.2f}x /healthz's; "
                  f"{len(errors)} errors {errors[:3]}")  # fmt: skip
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
