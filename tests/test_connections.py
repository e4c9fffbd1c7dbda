"""Idle database connections do not pile up: a web server as `make run` starts it leaves none
open after 40 requests."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.processes import free_port, shared_database_url, wait_for_http

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
APPLICATION = "dashboard-connections-test"


def open_connections(server: subprocess.Popen) -> int:
    """The server's database connections: PostgreSQL's sessions named for it, or the SQLite
    database files it holds open."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION]
            )
            return cursor.fetchone()[0]
    database = os.path.realpath(connection.settings_dict["NAME"])
    held = 0
    for fd in Path(f"/proc/{server.pid}/fd").iterdir():
        try:
            held += os.path.realpath(fd.readlink()) == database
        except OSError:
            continue
    return held


def test_forty_requests_leave_no_idle_connection_behind(tmp_path):
    port = free_port()
    url = shared_database_url()
    if url.startswith("postgres"):
        url += f"?application_name={APPLICATION}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": url,
        "VAR_DIR": str(tmp_path),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", server)
        with httpx.Client(base_url=base) as client:
            for number in range(40):
                path = ("/healthz", "/login/", "/", "/emulator/v1/models")[number % 4]
                client.get(path, headers={"x-api-key": "sk-any", "anthropic-version": "2023-06-01"})
        assert open_connections(server) == 0
    finally:
        server.terminate()
        server.wait(timeout=20)
