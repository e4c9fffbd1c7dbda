"""The user's path through the dashboard in real Chromium, against the sandbox (the emulator
served by the live server).

No Celery worker runs here: a background thread stands in for it, once every half second checking
new uploads (`run_check`), creating the batches of submitted ones (`create_batches`), syncing the
workspace and ingesting the results of ended batches, exactly what the worker's tasks call. Every
page visited is saved as a screenshot under tests/artifacts/.
"""

import csv
import io
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from batches import ingestion, mirror, submissions, totals
from batches.models import Batch, Submission
from batches.workspaces import create_workspace
from emulator.testing import make_batch
from tests.browser import ARTIFACTS, assert_no_problems, needs_chromium, open_page, shot
from tests.helpers import run_actions, run_checks

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
SAMPLES = Path(__file__).parent / "fixtures" / "samples"
KEY = "sk-ant-sandbox-browser-0123456789"

pytestmark = [pytest.mark.browser, needs_chromium]


class Worker(threading.Thread):
    """What the Celery worker would do, every half second."""

    def __init__(self, workspace_id):
        super().__init__(daemon=True)
        self.workspace_id = workspace_id
        self.stopping = threading.Event()
        self.errors = []

    def run(self):
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except Exception as error:  # keep going; the test reports it
                    self.errors.append(repr(error))
                self.stopping.wait(0.5)
        finally:
            connection.close()

    def tick(self):
        run_checks()
        run_actions()
        for pk in Submission.objects.filter(state=Submission.State.SUBMITTING).values_list(
            "pk", flat=True
        ):
            submissions.create_batches(pk)
        report = mirror.sync_workspace(self.workspace_id)
        for batch_id in report.to_ingest:
            ingestion.ingest_results(batch_id)
            totals.store_totals(Batch.objects.filter(pk=batch_id))


@pytest.fixture
def sandbox(live_server, transactional_db, django_user_model, settings):
    settings.EMULATOR_BASE_SECONDS = 6.0
    settings.EMULATOR_PROGRESSIVE_COUNTS = True
    settings.SYNC_INTERVAL_SECONDS = 1.0
    settings.FULL_SYNC_INTERVAL_SECONDS = 1.0
    user = django_user_model.objects.create_user("ada", password="pw-ada-12345")
    workspace = create_workspace(
        "Sandbox", f"{live_server.url}/emulator", KEY, members=[(user, "admin")], sandbox=True
    )
    worker = Worker(workspace.pk)
    worker.start()
    yield workspace
    worker.stopping.set()
    worker.join(timeout=10)
    assert not worker.errors, worker.errors


@pytest.fixture
def page(live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, context, page = open_page(
            playwright,
            live_server.url,
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
            timezone_id="Europe/Paris",
        )
        yield page
        assert_no_problems(page)
        context.close()
        browser.close()


def log_in(page):
    page.goto(f"{page.base}/login/")
    shot(page, "00-login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "pw-ada-12345")
    page.click("button[type=submit]")
    page.wait_for_url(f"{page.base}/")


def upload(page, workspace, path: Path, name: str):
    page.goto(f"{page.base}/w/{workspace.slug}/upload/")
    page.set_input_files("input[name=file]", str(path))
    page.fill("input[name=name]", name)
    page.click("text=Check the file")
    page.wait_for_url("**/submissions/**")


def submit_upload(page):
    page.locator("button:has-text('Submit')").click(timeout=20_000)
    # Locators, not wait_for_function: its predicates are evaluated as strings, which the
    # Content-Security-Policy (no eval) refuses.
    page.locator("h1", has_text="Ready to submit").wait_for(state="detached")


def test_it_walks_the_users_path(sandbox, page):
    log_in(page)
    workspace = sandbox

    # Upload questions.jsonl and submit it; the list shows the row running, then ended, by itself.
    upload(page, workspace, SAMPLES / "questions.jsonl", "Questions")
    shot(page, "01-submission")
    submit_upload(page)
    page.goto(f"{page.base}/")
    row = page.locator("tr", has_text="Questions")
    row.wait_for()
    assert "In progress" in row.inner_text() or "Ended" in row.inner_text()
    shot(page, "02-list-running")
    page.evaluate("window.__marker = 'no reload'")
    row.locator(".badge", has_text="Ended").wait_for(timeout=30_000)
    assert page.evaluate("window.__marker") == "no reload"
    page.locator("#running-counter", has_text="0 running").wait_for(timeout=15_000)
    page.locator(".toast", has_text="Batch ended").first.wait_for(timeout=15_000)
    shot(page, "03-list-ended")

    # The batch page, with its results fetched, then one result and its answer.
    row.locator("a.cell-main").click()
    page.locator("text=Explore 4 results").wait_for(timeout=20_000)
    shot(page, "04-batch-detail")
    page.click("text=Explore 4 results")
    page.locator("table.results-table").wait_for()
    shot(page, "05-results")
    page.fill("input[name=q]", "question-1")
    page.locator("table.results-table tbody tr").first.wait_for()
    page.locator("table.results-table tbody tr").nth(1).wait_for(state="detached")
    page.click("table.results-table tbody a")
    answer = page.locator(".answer")
    assert len(answer.inner_text().strip()) > 20
    page.click("summary:has-text('Raw JSON')")
    page.locator(".raw-body pre").first.wait_for()
    shot(page, "06-one-result")

    # Download the flat CSV and read its rows.
    page.goto(page.base + Batch.objects.get(name="Questions").get_absolute_url())
    with page.expect_download() as info:
        page.click("text=Results CSV")
    download = info.value
    assert download.suggested_filename.startswith("questions-")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text("utf-8-sig"))))
    assert rows[0][0] == "custom_id" and len(rows) == 5
    assert {row[1] for row in rows[1:]} == {"succeeded"}

    # reviews.csv with a template: the CSV comes back with the answers appended.
    upload(page, workspace, SAMPLES / "reviews.csv", "Reviews")
    page.fill(
        "textarea[name=template]", "Classify as positive, negative or neutral (one word): {review}"
    )
    page.select_option("select[name=id_column]", "review_id")
    page.click("text=Check every row")
    page.locator("button:has-text('Submit')").wait_for()
    submit_upload(page)
    page.goto(f"{page.base}/")
    page.locator("tr", has_text="Reviews").locator(".badge", has_text="Ended").wait_for(
        timeout=30_000
    )
    page.locator("tr", has_text="Reviews").locator("a.cell-main").click()
    page.locator("text=Your CSV with answers").wait_for(timeout=20_000)
    with page.expect_download() as info:
        page.click("text=Your CSV with answers")
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text("utf-8-sig"))))
    assert rows[0] == ["review_id", "review", "answer", "result_type", "error"]
    assert [row[0] for row in rows[1:]] == ["r1", "r2", "r3", "r4", "r5"]
    assert all(row[3] == "succeeded" and row[2] for row in rows[1:])

    # On a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{page.base}/")
    shot(page, "07-list-phone")
    page.goto(page.base + Batch.objects.get(name="Reviews").get_absolute_url())
    shot(page, "08-detail-phone")


def test_it_cancels_deletes_and_resubmits(sandbox, page, settings):
    settings.EMULATOR_PROGRESSIVE_COUNTS = False
    workspace = sandbox
    large = make_batch(KEY, 20_000)
    errored = make_batch(KEY, 12, prefix="retry", invalid_every=4)
    # This walk is about the actions; how a batch from a script arrives on an idle page (the
    # header's slow poll) is another test's. So the worker mirrors both before the page loads.
    deadline = time.monotonic() + 20
    while Batch.objects.filter(api_id__in=[large.batch_id, errored.batch_id]).count() < 2:
        assert time.monotonic() < deadline, "the worker did not mirror the batches"
        time.sleep(0.2)
    log_in(page)
    page.locator(f"#row-{large.batch_id}").wait_for()
    page.locator(f"#row-{errored.batch_id} .badge", has_text="Ended").wait_for(timeout=30_000)
    shot(page, "10-list-mixed")

    # Cancel the large one: confirm in the dialog, then watch it end canceled.
    page.click(f"#row-{large.batch_id} a.cell-main")
    assert "of at most 24 h" in page.inner_text("#batch-live")
    page.click("text=Cancel batch…")
    page.locator("#dlg-cancel").wait_for()
    shot(page, "11-cancel-confirm", full=False)
    page.click("#dlg-cancel button[type=submit]")
    page.locator(".toast", has_text="Canceling").wait_for()
    page.locator("#batch-live .badge", has_text="Canceled").wait_for(timeout=30_000)
    shot(page, "12-canceled")

    # Delete an ended one, keeping the local copy.
    page.click("text=Delete…")
    page.locator("#dlg-delete").wait_for()
    shot(page, "13-delete-confirm", full=False)
    page.click("#dlg-delete button[type=submit]")
    page.locator(".toast", has_text="The copy here is kept").wait_for()
    # The worker carries it out; the page shows it, by itself, when it has.
    page.locator("#batch-live .badge", has_text="Deleted").wait_for(timeout=20_000)
    assert Batch.objects.get(api_id=large.batch_id).gone_at is not None
    shot(page, "14-deleted")

    # The errored batch was created outside the dashboard: resubmit is disabled and says why.
    page.goto(f"{page.base}/w/{workspace.slug}/batches/{errored.batch_id}/")
    page.locator("text=Explore 12 results").wait_for(timeout=20_000)
    assert page.locator("button:has-text('Resubmit')").is_disabled()
    assert "created outside the dashboard" in page.inner_text("#batch-live")
    assert "Errors by type" in page.inner_text("#batch-live")
    shot(page, "15-errored-outside")


def test_it_resubmits_the_errored_requests_of_an_uploaded_batch(sandbox, page, tmp_path):
    import json

    workspace = sandbox
    lines = []
    for number in range(6):
        params = {
            "model": "claude-haiku-4-5",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": f"Question {number}"}],
        }
        lines.append(json.dumps({"custom_id": f"q-{number}", "params": params}))
    source = tmp_path / "overloaded.jsonl"
    source.write_text("\n".join(lines))
    log_in(page)
    upload(page, workspace, source, "Sometimes overloaded")
    submit_upload(page)
    page.goto(f"{page.base}/")
    row = page.locator("tr", has_text="Sometimes overloaded")
    row.locator(".badge", has_text="Ended").wait_for(timeout=30_000)
    batch = Batch.objects.get(name="Sometimes overloaded")
    # The emulator has no per-request failures for valid requests: mark two as overloaded, as
    # the API would report them.
    batch.results.filter(custom_id__in=["q-1", "q-4"]).update(
        result_type="errored", error_type="overloaded_error", error_message="Overloaded"
    )
    Batch.objects.filter(pk=batch.pk).update(errored=2, succeeded=4)
    page.goto(f"{page.base}{batch.get_absolute_url()}")
    page.click("text=Resubmit…")
    page.locator("#dlg-resubmit").wait_for()
    shot(page, "20-resubmit-confirm", full=False)
    page.click("#dlg-resubmit button[type=submit]")
    page.wait_for_url("**/submissions/**")
    assert "resubmits" in page.inner_text("main")
    # The check runs in the background; the page shows its report when it is in.
    page.locator("text=2 requests ready").wait_for(timeout=20_000)
    new = Submission.objects.get(resubmission_of=batch)
    assert new.request_count == 2
    shot(page, "21-resubmission")


@pytest.fixture(scope="session", autouse=True)
def _copy_screenshots_for_the_readme():
    yield
    wanted = {
        "02-list-running": "batch-list.png",
        "04-batch-detail": "batch-detail.png",
        "05-results": "results.png",
        "06-one-result": "one-result.png",
        "11-cancel-confirm": "cancel.png",
        "07-list-phone": "batch-list-phone.png",
    }
    target = Path(__file__).parent.parent / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") and all(
        (ARTIFACTS / f"{name}.png").exists() for name in wanted
    ):
        target.mkdir(parents=True, exist_ok=True)
        for name, final in wanted.items():
            shutil.copy(ARTIFACTS / f"{name}.png", target / final)


def test_a_batch_created_by_a_script_shows_up_on_an_idle_home_page(sandbox, page):
    """Nothing runs, so the counter polls slowly; the list polls every 3 s all the same, and a
    batch created from a script appears at its next poll, with no reload. The list then tells
    the counter, which follows at once instead of at its slow poll."""
    page.clock.install()
    log_in(page)
    counter = page.locator("#running-counter")
    assert counter.get_attribute("hx-trigger") == "load, every 30s, region-changed from:body"
    page.locator("text=No batches yet").wait_for()
    page.clock.run_for(1_000)  # the counter's poll on load
    state = counter.get_attribute("data-state")
    page.evaluate("window.__marker = 'no reload'")
    created = make_batch(KEY, 3, prefix="script")
    for _ in range(40):  # the worker thread syncs it into the dashboard
        if Batch.objects.filter(api_id=created.batch_id).exists():
            break
        page.wait_for_timeout(250)
    # Under Playwright's sync API this body runs in its own context, so the query above opened a
    # connection of its own: close it, or PostgreSQL cannot drop the test database at the end.
    connection.close()
    assert not page.locator(f"#row-{created.batch_id}").count()
    page.clock.run_for(3_100)  # the browser's timers only: the list's poll comes due
    page.locator(f"#row-{created.batch_id}").wait_for(timeout=10_000)
    # The counter knows of the new batch (its state names the newest) without its 30 s poll.
    page.wait_for_function(
        "state => document.querySelector('#running-counter').dataset.state !== state",
        arg=state, timeout=10_000,
    )  # fmt: skip
    assert page.evaluate("window.__marker") == "no reload"
    shot(page, "idle-home-new-batch")
