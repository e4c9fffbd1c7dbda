"""Uploading in real Chromium: the check's progress region, stopping a check, and a Submit that
moves the page from Submitting to Submitted by itself, with a real Celery worker.

The worker runs in this process (celery's test worker, a thread pool) on the suite's broker; a
thread stands in for the beat, asking for a sync every second. The emulator is served by the
live server, so every API call crosses real HTTP.
"""

import json
import threading
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from batches import search, tasks
from batches.intake import job
from batches.models import Batch, Submission
from batches.workspaces import create_workspace
from dashboard.celery import app
from tests.browser import assert_no_problems, needs_chromium, open_page, shot
from tests.test_browser_dashboard import log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration, needs_chromium]


def jsonl(count: int, prefix: str = "r") -> bytes:
    lines = (
        json.dumps(
            {
                "custom_id": f"{prefix}-{number}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"Question number {number}?"}],
                },
            }
        )
        for number in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def person(live_server, transactional_db, django_user_model, settings):
    settings.EMULATOR_BASE_SECONDS = 1.0
    settings.EMULATOR_SECONDS_PER_REQUEST = 0.0004  # 20,000 requests end in about 9 s
    settings.SYNC_INTERVAL_SECONDS = 1.0
    user = django_user_model.objects.create_user("ada", password="pw-ada-12345")
    app.control.purge()
    yield user
    app.control.purge()  # what a test left queued never reaches the next test's worker


@pytest.fixture
def page(live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, context, page = open_page(
            playwright, live_server.url, viewport={"width": 1280, "height": 900}
        )
        yield page
        assert_no_problems(page)
        # Under Playwright's sync API the test's queries ran in a context of their own, with a
        # connection of their own: close it, or PostgreSQL cannot drop the test database.
        connection.close()
        context.close()
        browser.close()


def upload(page, workspace, path, name):
    page.goto(f"{page.base}/w/{workspace.slug}/upload/")
    page.set_input_files("input[name=file]", str(path))
    page.fill("input[name=name]", name)
    page.click("text=Check the file")
    page.wait_for_url("**/submissions/**")
    return Submission.objects.get(name=name)


def test_the_check_shows_its_progress_then_its_report_and_can_be_stopped(
    person, page, live_server, tmp_path
):
    """No worker here: the test plays it, reporting progress as a check does, so the page is
    seen moving through each state without a reload."""
    workspace = create_workspace("Research", f"{live_server.url}/emulator", "sk-ant-p-1",
                                 members=[person])  # fmt: skip
    path = tmp_path / "questions.jsonl"
    path.write_bytes(jsonl(3000))
    log_in(page)
    submission = upload(page, workspace, path, "Questions")
    page.locator("h1", has_text="Checking").wait_for()
    page.locator("text=The check starts as soon as a worker is free").wait_for()
    page.evaluate("window.__marker = 'no reload'")

    # The worker has read about half the file: the region shows lines, bytes, rate, time left.
    from django.utils import timezone

    Submission.objects.filter(pk=submission.pk).update(
        check_started_at=timezone.now() - timedelta(seconds=2),
        check_lines=1500,
        check_bytes=submission.upload_size // 2,
        check_requests=1499,
        check_problems=1,
    )
    page.locator("text=1,500 lines read").wait_for(timeout=5000)
    facts = page.inner_text(".progress-facts")
    assert "/s" in facts and "left" in facts, facts
    assert page.get_attribute("[role=progressbar]", "aria-valuenow") == "50"
    assert "1 problem" in page.inner_text("#submission-live")
    shot(page, "30-upload-checking")

    # Stop: the running check sees it at its next report and lets go of everything.
    page.click("text=Stop checking")
    page.wait_for_url(f"**{submission.get_absolute_url()}")
    assert job.run_check(submission.pk) == "stopped"
    page.locator("text=The check was stopped").wait_for(timeout=5000)
    shot(page, "31-upload-stopped")

    # Check again, and this time let it finish: the report replaces the progress by itself.
    page.click("text=Check again")
    page.locator("h1", has_text="Checking").wait_for()
    page.evaluate("window.__marker = 'no reload'")
    assert job.run_check(submission.pk) == "ready"
    page.locator("text=3,000 requests ready").wait_for(timeout=5000)
    assert page.evaluate("window.__marker") == "no reload"
    assert "Ready to submit" in page.inner_text("h1")
    shot(page, "32-upload-ready")


def test_the_upload_itself_shows_its_progress_can_be_canceled_and_says_what_to_fix(
    person, page, live_server, tmp_path
):
    """The page sends the file as the request's body: a slowed network shows the bytes sent and
    the time left; Cancel keeps nothing; a refused file brings back the form with its message,
    without a reload, and the same form then uploads."""
    workspace = create_workspace("Research", f"{live_server.url}/emulator", "sk-ant-p-1",
                                 members=[person])  # fmt: skip
    path = tmp_path / "questions.jsonl"
    path.write_bytes(jsonl(20_000))  # about 3 MB
    log_in(page)
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    slow = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 400_000}
    network.send("Network.emulateNetworkConditions", slow)

    page.goto(f"{page.base}/w/{workspace.slug}/upload/")
    page.evaluate("window.__marker = 'no reload'")
    page.set_input_files("input[name=file]", str(path))
    page.click("text=Check the file")
    page.locator("[data-upload-status]", has_text=" s left").wait_for()
    status = page.inner_text("[data-upload-status]")
    assert "Uploading" in status and "MB of 3." in status and "MB/s" in status, status
    meter = "[data-upload-progress] [role=progressbar]"
    assert int(page.get_attribute(meter, "aria-valuenow")) < 100
    assert page.is_disabled("text=Check the file")
    shot(page, "29-upload-sending", full=False)
    page.click("text=Cancel the upload")
    page.locator("text=Upload canceled: nothing was kept.").wait_for()
    assert page.is_enabled("text=Check the file")
    assert not Submission.objects.exists()

    # A file that is not one: the form comes back with its message, in place.
    network.send("Network.emulateNetworkConditions", {**slow, "uploadThroughput": -1})
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    page.set_input_files("input[name=file]", str(notes))
    page.click("text=Check the file")
    page.locator("#id_file_error", has_text="notes.txt is not a .jsonl or .csv file").wait_for()
    assert page.evaluate("window.__marker") == "no reload"
    assert page.evaluate("document.activeElement.id") == "id_file"
    assert not Submission.objects.exists()

    # Too large for the dashboard: said before a byte is sent.
    page.evaluate("document.querySelector('form[data-raw-upload]').dataset.maxBytes = '1000'")
    page.set_input_files("input[name=file]", str(path))
    page.click("text=Check the file")
    page.locator("[data-upload-status]", has_text="the limit is 0.0 MB").wait_for()

    # The same page, the right file: stored whole, and the check's page follows.
    page.evaluate("delete document.querySelector('form[data-raw-upload]').dataset.maxBytes")
    page.fill("input[name=name]", "Questions")
    page.click("text=Check the file")
    page.wait_for_url("**/submissions/**")
    submission = Submission.objects.get()
    assert submission.name == "Questions" and submission.source_filename == "questions.jsonl"
    assert submission.upload_size == path.stat().st_size
    with submission.upload.open("rb") as stored:
        assert stored.read() == path.read_bytes()


class Beat(threading.Thread):
    """Asks the worker for a sync of every workspace each second, as the beat does."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self):
        try:
            while not self.stopping.wait(1.0):
                tasks.sync_all_workspaces.delay()
        finally:
            connection.close()


def wait_for_ingestion(name: str, timeout: float) -> None:
    """Until the named batch's results are stored and indexed for search, if it ended; quietly,
    since it runs in a `finally` that must not hide the test's own failure. The search index is
    written by a task of its own after ingestion: a worker still writing it while the test
    database is flushed makes the flush fail (and the next test find this one's user)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = Batch.objects.filter(name=name).first()
        if batch is None or not batch.is_ended:
            return
        if batch.results_complete and (not search.supported() or search.is_indexed(batch)):
            return
        time.sleep(0.5)


@pytest.mark.parametrize("key", ["sk-ant-sandbox-plain-1", "sk-ant-sandbox-fault-slow-1"])
def test_submit_moves_the_page_to_submitted_and_every_row_follows_its_batch(
    person, page, live_server, tmp_path, key
):
    workspace = create_workspace("Research", f"{live_server.url}/emulator", key, members=[person])
    path = tmp_path / "twenty-thousand.jsonl"
    path.write_bytes(jsonl(20_000))
    beat = Beat()
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=2,
                      loglevel="WARNING", shutdown_timeout=30):  # fmt: skip
        beat.start()
        try:
            log_in(page)
            upload(page, workspace, path, "Twenty thousand")
            page.locator("text=20,000 requests ready").wait_for(timeout=30_000)
            page.click("button:has-text('Submit 20,000 requests')")
            page.locator("h1", has_text="Submitting").wait_for()
            page.evaluate("window.__marker = 'no reload'")
            started = time.monotonic()
            page.locator("text=Submitted.").wait_for(timeout=30_000)
            batch = Batch.objects.get(name="Twenty thousand")
            # Within seconds of the API's answer, whatever sending took.
            assert time.monotonic() - started < 20
            live = page.locator("#submission-live")
            assert "Submitted" in page.inner_text("h1") and "Submitting" not in live.inner_text()
            assert batch.api_id in live.inner_text()
            row = page.locator("tr", has_text="Twenty thousand")
            assert "In progress" in row.inner_text() or "Ended" in row.inner_text()
            shot(page, f"33-submitted-{key.rsplit('-', 2)[1]}")
            # The batch ends: its row on this page says so, without a reload.
            row.locator(".badge", has_text="Ended").wait_for(timeout=60_000)
            assert page.evaluate("window.__marker") == "no reload"
            assert "In progress" not in live.inner_text()
            page.click("text=Open the batch")
            page.wait_for_url(f"**{batch.get_absolute_url()}")
        finally:
            beat.stopping.set()
            beat.join(timeout=10)
            # The worker goes on to ingest the results: let it finish before it stops, or its
            # threads would still be writing while the test database is flushed.
            wait_for_ingestion(name="Twenty thousand", timeout=120)
    assert Batch.objects.count() == 1


def test_try_the_first_three_shows_their_answers_by_themselves(person, page, live_server, tmp_path):
    """Try first on the sandbox, with a real worker: the upload is checked, the first three
    requests go through the Messages API, and their answers replace "Sending…" without a reload."""
    workspace = create_workspace("Research", f"{live_server.url}/emulator", "sk-ant-p-1",
                                 members=[person])  # fmt: skip
    path = tmp_path / "questions.jsonl"
    path.write_bytes(jsonl(12, prefix="q"))
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=2,
                      loglevel="WARNING", shutdown_timeout=30):  # fmt: skip
        log_in(page)
        submission = upload(page, workspace, path, "Questions")
        page.locator("text=12 requests ready").wait_for(timeout=30_000)
        page.locator("#try-count").wait_for()  # once the requests are indexed, a moment later
        options = page.locator("#try-count option")
        assert options.count() == 10
        chosen = " ".join(page.locator("#try-count option:checked").inner_text().split())
        assert chosen.startswith("the first") and "3 requests: at most about $" in chosen, chosen
        page.click("text=Try now")
        page.wait_for_url(f"**{submission.get_absolute_url()}#try")
        page.evaluate("window.__marker = 'no reload'")
        page.locator(".trial .badge", has_text="Answered").nth(2).wait_for(timeout=30_000)
        assert page.evaluate("window.__marker") == "no reload"
        trials = page.locator(".trial")
        assert trials.count() == 3
        assert [trials.nth(n).locator(".mono").first.inner_text() for n in range(3)] == [
            "q-0", "q-1", "q-2"]  # fmt: skip
        assert "Question number 0?" in trials.nth(0).inner_text()
        assert "at the standard price" in trials.nth(0).inner_text()
        assert "17 of 20" in page.inner_text("#try")
        page.evaluate("document.querySelector('#try').scrollIntoView()")
        shot(page, "34-try-first", full=False)
