"""Two machines: the web process and a Celery worker with different VAR_DIRs (no shared disk),
sharing only the database, Redis and an S3 server. An upload is checked by the worker, submitted,
its results ingested by the worker, and every download is served by the web process.
"""

import csv
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from batches import tasks
from batches.models import Batch, Submission
from batches.workspaces import create_workspace
from dashboard.celery import app
from tests.processes import free_port, shared_database_url, wait_for_http

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "fixtures" / "samples"


def _start(argv, env, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _form_token(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def test_a_web_process_and_a_worker_share_nothing_but_the_database_redis_and_s3(
    bucket, tmp_path, django_user_model
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    common = {
        **{name: value for name, value in os.environ.items() if name != "TEST_MEDIA_ROOT"},
        **bucket.environment(),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "SITE_URL": base,
        "EMULATOR_BASE_SECONDS": "0.5",
        "EMULATOR_SECONDS_PER_REQUEST": "0",
    }
    web_dir, worker_dir = tmp_path / "web-var", tmp_path / "worker-var"
    # Hashed as the web process (the project's settings, not the tests') can check it.
    user = django_user_model.objects.create_user("ada")
    user.password = PBKDF2PasswordHasher().encode("pw-ada-12345", "twomachinessalt")
    user.save(update_fields=["password"])
    workspace = create_workspace("Research", f"{base}/emulator", "sk-ant-two-1", members=[user])
    app.control.purge()
    web = _start(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        {**common, "VAR_DIR": str(web_dir)},
        tmp_path / "web.log",
    )
    worker = _start(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool=threads",
         "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        {**common, "VAR_DIR": str(worker_dir)},
        tmp_path / "worker.log",
    )  # fmt: skip
    try:
        wait_for_http(f"{base}/healthz", web)
        with httpx.Client(base_url=base, timeout=30) as browser:
            login = browser.get("/login/")
            browser.post(
                "/login/",
                data={
                    "username": "ada",
                    "password": "pw-ada-12345",
                    "csrfmiddlewaretoken": _form_token(login.text),
                },
            )
            upload_page = browser.get(f"/w/{workspace.slug}/upload/")
            assert upload_page.status_code == 200, upload_page.text[:500]
            sent = browser.post(
                f"/w/{workspace.slug}/upload/",
                data={"name": "Reviews", "oversize": "split",
                      "csrfmiddlewaretoken": _form_token(upload_page.text)},
                files={"file": ("reviews.csv", (SAMPLES / "reviews.csv").read_bytes())},
            )  # fmt: skip
            assert sent.status_code == 302, sent.text[:500]
            page_url = sent.headers["location"]
            page = browser.get(page_url)
            browser.post(
                f"{page_url}template/",
                data={
                    "template": "Classify as positive, negative or neutral (one word): {review}",
                    "id_column": "review_id",
                    "model": "claude-haiku-4-5",
                    "max_tokens": "16",
                    "csrfmiddlewaretoken": _form_token(page.text),
                },
            )
            deadline = time.monotonic() + 60
            while "5 requests ready" not in (page := browser.get(page_url)).text:
                assert time.monotonic() < deadline, "the worker never checked the upload"
                time.sleep(0.3)
            browser.post(f"{page_url}submit/", data={"csrfmiddlewaretoken": _form_token(page.text)})
            deadline = time.monotonic() + 90
            while not Batch.objects.filter(results_ingested_at__isnull=False).exists():
                assert time.monotonic() < deadline, "the results were never ingested"
                tasks.sync_all_workspaces.delay()  # what the beat does
                time.sleep(1)
            batch = Batch.objects.get()
            assert batch.results_ingested == 5
            assert Submission.objects.get().state == Submission.State.SUBMITTED
            url = batch.get_absolute_url()
            jsonl = browser.get(f"{url}download/results.jsonl")
            assert jsonl.status_code == 200 and len(jsonl.content.strip().splitlines()) == 5
            flat = browser.get(f"{url}download/results.csv")
            assert len(list(csv.reader(io.StringIO(flat.content.decode("utf-8-sig"))))) == 6
            answers = browser.get(f"{url}download/answers.csv")
            rows = list(csv.reader(io.StringIO(answers.content.decode("utf-8-sig"))))
            assert [row[0] for row in rows] == ["review_id", "r1", "r2", "r3", "r4", "r5"]
            assert all(row[-2] == "succeeded" for row in rows[1:])
            assert "merci" in browser.get(f"{url}results/r5/").text
    finally:
        for process in (worker, web):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        app.control.purge()
    keys = bucket.keys()
    assert any(key.endswith("reviews.csv") for key in keys)
    assert any(key.endswith("part-1.json") for key in keys)
    assert any(key.startswith("results/") for key in keys)
    for directory in (web_dir, worker_dir):
        media = directory / "media"
        assert not media.exists() or not any(media.rglob("*.*")), list(media.rglob("*"))
    logs = (tmp_path / "web.log").read_text() + (tmp_path / "worker.log").read_text()
    assert "Traceback" not in logs, logs[-3000:]
