"""The usage page in Chromium: its charts drawn from the tables' numbers (no CSP complaint), the
budget's bar, a period chosen with a preset, on a laptop and on a phone."""

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from batches import totals
from batches.models import Batch, Result
from batches.workspaces import create_workspace
from tests import factories
from tests.browser import assert_no_problems, log_in, needs_chromium, open_page, shot

pytestmark = [pytest.mark.browser, needs_chromium]
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture
def workspace(live_server, transactional_db, django_user_model):
    ada = django_user_model.objects.create_user("ada", password="pw-ada-12345")
    grace = django_user_model.objects.create_user("grace", password="pw-grace-12345")
    workspace = create_workspace(
        "Research", f"{live_server.url}/emulator", "sk-ant-usage-browser-1",
        members=[(ada, "admin"), (grace, "submitter")],
    )  # fmt: skip
    workspace.monthly_budget = Decimal("0.05")  # this month: two batches, about $0.08
    workspace.save()
    now = timezone.now()
    for day in range(0, 28, 3):  # a batch every third day, by two people, two models
        created = now - timedelta(days=day, hours=2)
        batch = factories.batch(
            workspace,
            created_at=created,
            ended_at=created + timedelta(hours=1 + day % 5),
            submitted_by=ada if day % 2 else grace,
        )
        results = [
            factories.succeeded(
                batch,
                f"r{n}",
                model="claude-sonnet-4-5" if n % 3 else "claude-haiku-4-5",
                input_tokens=1000 * (n + 1),
                output_tokens=400,
            )
            for n in range(6)
        ]
        results += [
            factories.errored(batch, "e1"),
            factories.errored(batch, "e2", error_type="overloaded_error"),
        ]
        Result.objects.bulk_create(results)
        Batch.objects.filter(pk=batch.pk).update(
            succeeded=6, errored=2, results_ingested=8, results_ingested_at=now
        )
    totals.store_totals(Batch.objects.filter(workspace=workspace))
    return workspace


def test_the_usage_page_draws_its_charts_on_a_laptop_and_a_phone(workspace, live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, context, page = open_page(playwright, live_server.url,
                                           viewport={"width": 1366, "height": 900})  # fmt: skip
        log_in(page, "ada", "pw-ada-12345")
        page.click("nav.nav >> text=Usage")
        page.wait_for_selector("canvas[data-drawn]")
        assert page.locator("canvas[data-drawn]").count() == 5
        assert page.locator("#workspaces table").count() == 1  # every workspace: by workspace
        page.goto(f"{live_server.url}/w/{workspace.slug}/usage/")
        page.wait_for_selector("canvas[data-drawn]")
        assert page.locator("canvas[data-drawn]").count() == 5
        # Spent more than the budget: the bar says so in words as well as in colour.
        label = page.locator(".budget-bar svg").get_attribute("aria-label")
        assert label is not None and "of the budget spent" in label
        assert page.locator("#budget .stat-bad").count() == 1
        shot(page, "60-usage-1366")
        shot(page, "60-usage-1366-top", full=False)
        page.click("text=Last 12 months")
        page.wait_for_selector("canvas[data-drawn]")
        rows = page.locator("#tokens tbody tr")
        assert rows.count() in (12, 13)  # the months from a year ago to this one
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{live_server.url}/w/{workspace.slug}/usage/")
        page.wait_for_selector("canvas[data-drawn]")
        width = page.evaluate(
            "document.querySelector('#chart-tokens').getBoundingClientRect().width"
        )
        assert 250 < width <= 390
        shot(page, "61-usage-390")
        page.locator("#cost-by-model").scroll_into_view_if_needed()
        shot(page, "62-usage-390-chart", full=False)
        assert_no_problems(page)
        context.close()
        browser.close()
