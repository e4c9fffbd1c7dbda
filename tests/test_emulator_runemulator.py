"""The emulator over real HTTP: alone (`runemulator`) and mounted in the dashboard."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-live"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _questions():
    lines = (ROOT / "tests" / "fixtures" / "samples" / "questions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _test_database_url() -> str:
    """The test database (SQLite file or PostgreSQL), for a server in another process."""
    from django.db import connection

    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    user, password = database.get("USER") or "", database.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host, port = database.get("HOST") or "127.0.0.1", database.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{database['NAME']}"


@pytest.mark.integration  # starts `manage.py runemulator`, a server in its own process
@pytest.mark.django_db(transaction=True)
def test_it_serves_the_sdk_alone_with_runemulator():
    port = _free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": _test_database_url(),
        "EMULATOR_BASE_SECONDS": "0",
        "EMULATOR_SECONDS_PER_REQUEST": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runemulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base_url}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, "runemulator exited"
                assert time.monotonic() < deadline, "runemulator did not answer"
                time.sleep(0.1)
        sdk = anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0)
        batch = sdk.messages.batches.create(requests=_questions())
        ended = sdk.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert ended.results_url == f"{base_url}/v1/messages/batches/{batch.id}/results"
        results = list(sdk.messages.batches.results(batch.id))
        assert {result.custom_id for result in results} == {r["custom_id"] for r in _questions()}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_it_serves_the_sdk_under_the_dashboard(live_server, settings):
    settings.EMULATOR_BASE_SECONDS = 0
    settings.EMULATOR_SECONDS_PER_REQUEST = 0
    base_url = f"{live_server.url}/emulator"
    sdk = anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0)
    batch = sdk.messages.batches.create(requests=_questions())
    assert (sdk.messages.batches.retrieve(batch.id).results_url or "").startswith(base_url)
    results = list(sdk.messages.batches.results(batch.id))
    assert len(results) == 4
    assert all(result.result.type == "succeeded" for result in results)
    answer = httpx.get(f"{base_url}/v1/messages/batches/{batch.id}")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"
