"""Every page at every width, in Chromium: the page itself never scrolls sideways (a wide table
scrolls inside its own box), from a phone (390 px) to a wide screen (1,920 px)."""

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches import labels, submissions
from batches.models import Batch
from batches.workspaces import create_workspace
from tests import factories
from tests.browser import assert_no_problems, log_in, needs_chromium, open_page, shot
from tests.helpers import run_checks

pytestmark = [pytest.mark.browser, needs_chromium]
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
WIDTHS = (390, 768, 1024, 1366, 1920)
# What sticks out past the window (outside the tables, which scroll in their own box).
WIDEST = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .filter(e => !e.closest('.table-wrap'))
  .slice(0, 6).map(e => e.tagName + '.' + e.className)"""
# How much of the batch list's table its box hides (scrolled out of sight).
TABLE_OVERFLOW = """(() => {
  const box = document.querySelector('.batch-table').closest('.table-wrap');
  return box.scrollWidth - box.clientWidth;
})()"""
LONG_NAME = "Quarterly evaluation of every support transcript in the archive, second pass"


@pytest.fixture
def place(live_server, transactional_db, django_user_model):
    ada = django_user_model.objects.create_user("ada", password="pw-ada-12345")
    workspace = create_workspace(
        "Research and evaluation", f"{live_server.url}/emulator", "sk-ant-widths-1",
        members=[(ada, "admin")],
    )  # fmt: skip
    factories.running_batch(workspace, submitted_by=ada, name=LONG_NAME)
    ended = factories.with_results(
        factories.batch(workspace, api_id="msgbatch_01LongIdentifierWithoutBreaks0000000001")
    )
    Batch.objects.filter(pk=ended.pk).update(cost="1234.567890", input_tokens=123_456_789)
    labels.set_labels(
        ended, ["evaluation", "nightly", "a label of forty characters nearly all of"[:40]]
    )
    first = ended.results.order_by("custom_id")[0]
    # An upload with a problem on a long line: the report's table.
    bad = b'{"custom_id": "a-very-long-custom-id-that-keeps-going-and-going-0001", "params": {}}\n'
    upload = submissions.create_submission(
        workspace, ada, SimpleUploadedFile("with-problems.jsonl", bad), name=LONG_NAME
    )
    run_checks()
    return workspace, ended, first.custom_id, upload


def every_page(place) -> list[str]:
    workspace, batch, custom_id, upload = place
    return [
        "/",
        "/workspaces/",
        workspace.get_absolute_url(),
        batch.get_absolute_url(),
        f"{batch.get_absolute_url()}results/",
        f"{batch.get_absolute_url()}results/{custom_id}/",
        f"/w/{workspace.slug}/upload/",
        upload.get_absolute_url(),
        f"/w/{workspace.slug}/settings/",
        f"/w/{workspace.slug}/audit/",
        "/usage/",
        f"/w/{workspace.slug}/usage/",
    ]


def test_no_page_scrolls_sideways_at_any_width(place, live_server):
    from playwright.sync_api import sync_playwright

    workspace, batch, _, _ = place
    workspace_page = workspace.get_absolute_url()
    pages = every_page(place)
    too_wide = []
    with sync_playwright() as playwright:
        browser, context, page = open_page(playwright, live_server.url,
                                           viewport={"width": 1366, "height": 900})  # fmt: skip
        log_in(page, "ada", "pw-ada-12345")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for address in pages:
                page.goto(f"{live_server.url}{address}")
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                if overflow > 0:
                    culprits = page.evaluate(WIDEST)
                    too_wide.append((width, address, overflow, culprits))
                    shot(page, f"width-{width}-{address.strip('/').replace('/', '_') or 'home'}")
        shot(page, "50-batch-list-1920")
        # On a laptop and wider, the batch list shows every column, a long name and id beside
        # them (truncated, whole on hover): nothing to scroll for.
        for width in (1366, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            for address in ("/", workspace_page):
                page.goto(f"{live_server.url}{address}")
                hidden = page.evaluate(TABLE_OVERFLOW)
                assert hidden <= 0, (width, address, hidden)
        page.set_viewport_size({"width": 1366, "height": 900})
        page.goto(f"{live_server.url}{batch.get_absolute_url()}")
        page.click("#rename summary")
        shot(page, "51-batch-labels-1366", full=False)
        page.goto(f"{live_server.url}/?label=nightly")
        assert page.locator("tbody tr").count() == 1
        shot(page, "52-list-by-label-1366", full=False)
        assert_no_problems(page)
        context.close()
        browser.close()
    assert too_wide == [], too_wide


# The page's background in each scheme: the system's setting decides, nothing else.
BACKGROUND = "getComputedStyle(document.documentElement).backgroundColor"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_meets_wcag_aa_in_light_and_dark(place, live_server, scheme):
    """axe-core on every page, in the system's light and dark schemes, at a laptop's width and
    a phone's; the dark pages are dark, and screenshots of both go to the README."""
    from playwright.sync_api import sync_playwright

    pages = every_page(place)
    with sync_playwright() as playwright:
        browser, context, page = open_page(playwright, live_server.url, color_scheme=scheme,
                                           viewport={"width": 1366, "height": 900})  # fmt: skip
        log_in(page, "ada", "pw-ada-12345")
        for width in (1366, 390):
            page.set_viewport_size({"width": width, "height": 900})
            for address in pages:
                page.goto(f"{live_server.url}{address}")
                page.wait_for_load_state("networkidle")
                assert_no_problems(page)  # axe-core: any WCAG 2.2 AA violation fails here
                background = page.evaluate(BACKGROUND)
                assert background == ("rgb(15, 17, 21)" if scheme == "dark" else
                                      "rgb(246, 247, 249)"), (address, background)  # fmt: skip
        batch_list, usage = pages[0], pages[-1]
        for width, device in ((1366, "laptop"), (390, "phone")):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{live_server.url}{batch_list}")
            shot(page, f"60-batch-list-{scheme}-{device}", full=False)
        page.set_viewport_size({"width": 1366, "height": 900})
        page.goto(f"{live_server.url}{usage}")
        page.wait_for_selector("canvas[data-drawn]")
        shot(page, f"61-usage-{scheme}-laptop", full=False)
        context.close()
        browser.close()
