"""Teams in real Chromium: an admin invites someone by email, the invited person sets a password
from the link and sees only what a viewer may; the settings and audit pages, screenshotted."""

import os
import re

import pytest
from django.core import mail
from django.db import connection

from batches.models import AuditEntry
from batches.workspaces import create_workspace
from tests import factories
from tests.browser import assert_no_problems, log_in, needs_chromium, open_page, shot

pytestmark = [pytest.mark.browser, needs_chromium]
# Playwright's sync API runs an event loop in this thread: the test's own queries are safe here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture
def team(live_server, transactional_db, django_user_model, settings, tasks_at_once):
    settings.SITE_URL = live_server.url  # the links in emails (sent at once, by their tasks)
    ada = django_user_model.objects.create_user("ada", email="ada@example.com",
                                                password="pw-ada-12345")  # fmt: skip
    workspace = create_workspace(
        "Research", f"{live_server.url}/emulator", "sk-ant-teams-1", members=[(ada, "admin")]
    )
    running = factories.running_batch(workspace, submitted_by=ada, name="Nightly summaries")
    ended = factories.with_results(factories.batch(workspace, name="Reviews, June"))
    return workspace, running, ended


@pytest.fixture
def browser_pages(live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        opened = []

        def new_page(**options):
            browser, context, page = open_page(
                playwright, live_server.url, viewport={"width": 1280, "height": 900}, **options
            )
            opened.append((browser, context, page))
            return page

        yield new_page
        for browser, context, page in opened:
            assert_no_problems(page)
            context.close()
            browser.close()
        connection.close()


def test_an_invited_viewer_sets_a_password_and_sees_only_what_a_viewer_may(team, browser_pages):
    workspace, _, ended = team
    admin = browser_pages()
    log_in(admin, "ada", "pw-ada-12345")
    admin.goto(f"{admin.base}/w/{workspace.slug}/")
    admin.click("text=Settings")
    admin.wait_for_url(f"**/w/{workspace.slug}/settings/")
    admin.fill("#id_email", "lin@example.com")
    admin.select_option("#id_role >> nth=1", "viewer")
    admin.click("button:has-text('Send invitation')")
    admin.locator("text=Invited lin@example.com as viewer").wait_for()
    assert admin.locator("tr", has_text="lin").locator(".badge", has_text="invited").is_visible()
    shot(admin, "40-workspace-settings")

    [message] = mail.outbox
    found = re.search(r"https?://\S+/invitation/\S+", str(message.body))
    assert found is not None, message.body
    link = found.group(0)
    invited = browser_pages()
    invited.goto(link)
    invited.locator("h1", has_text="Welcome to the batch dashboard").wait_for()
    shot(invited, "41-invitation")
    invited.fill("input[name=new_password1]", "lin-chooses-a-passphrase")
    invited.fill("input[name=new_password2]", "lin-chooses-a-passphrase")
    invited.click("button:has-text('Set my password')")
    invited.wait_for_url(f"{invited.base}/")
    assert "lin" in invited.inner_text("header")

    # A viewer: the batches and their results, no upload, no actions, no settings.
    invited.goto(f"{invited.base}/w/{workspace.slug}/")
    invited.locator("text=Nightly summaries").wait_for()
    text = invited.inner_text("main")
    assert "Upload a file" not in text and "Settings" not in text
    invited.click("text=Nightly summaries")
    invited.locator("h1", has_text="Nightly summaries").wait_for()
    main = invited.inner_text("main")
    assert "Cancel batch" not in main and "Refresh now" not in main and "Delete" not in main
    invited.goto(f"{invited.base}{ended.get_absolute_url()}")
    assert invited.locator("a", has_text="Results CSV").count() == 1  # downloads are on
    shot(invited, "42-viewer-batch")
    invited.goto(f"{invited.base}/w/{workspace.slug}/settings/")
    assert "Not allowed" in invited.inner_text("h1")
    assert "admins may change its members and settings" in invited.inner_text("main")

    # The admin reads who did what.
    admin.goto(f"{admin.base}/w/{workspace.slug}/audit/")
    log = admin.inner_text("table")
    assert "Invited a member" in log and "member lin" in log
    shot(admin, "43-audit-log")
    admin.select_option("#id_action", "member_invite")
    admin.click("button:has-text('Filter')")
    admin.wait_for_url("**action=member_invite**")
    assert admin.locator("tbody tr").count() == 1
    assert AuditEntry.objects.filter(action="password_set", actor_name="lin").exists()
