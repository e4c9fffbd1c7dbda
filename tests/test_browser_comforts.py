"""Small comforts in Chromium: copy buttons that put the id on the clipboard (and say so), and
keyboard shortcuts listed on a ? overlay, never taken from a field being typed in."""

import os

import pytest

from batches.workspaces import create_workspace
from tests import factories
from tests.browser import assert_no_problems, log_in, needs_chromium, open_page, shot

pytestmark = [pytest.mark.browser, needs_chromium]
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture
def batch(live_server, transactional_db, django_user_model):
    ada = django_user_model.objects.create_user("ada", password="pw-ada-12345")
    workspace = create_workspace("Research", f"{live_server.url}/emulator", "sk-ant-comfort-1",
                                 members=[(ada, "admin")])  # fmt: skip
    return factories.with_results(factories.batch(workspace, name="Nightly eval"))


def test_copy_buttons_and_keyboard_shortcuts(batch, live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, context, page = open_page(playwright, live_server.url,
                                           viewport={"width": 1366, "height": 900})  # fmt: skip
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        log_in(page, "ada", "pw-ada-12345")
        # / goes to the search box; typing there types, it does not jump anywhere.
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "f-q"
        page.keyboard.type("gu")
        assert page.url == f"{live_server.url}/" and page.input_value("#f-q") == "gu"
        page.locator("#f-q").fill("")
        page.locator("h1").click()
        # ? lists the shortcuts; Escape closes the list.
        page.keyboard.press("?")
        assert page.locator("#shortcuts").is_visible()
        shot(page, "70-shortcuts", full=False)
        page.keyboard.press("Escape")
        assert not page.locator("#shortcuts").is_visible()
        page.locator("h1").click()
        page.keyboard.press("g")
        page.keyboard.press("u")
        page.wait_for_url(f"{live_server.url}/usage/")
        page.keyboard.press("g")
        page.keyboard.press("w")
        page.wait_for_url(f"{live_server.url}/workspaces/")
        page.keyboard.press("g")
        page.keyboard.press("b")
        page.wait_for_url(f"{live_server.url}/")
        # The batch page's copy button.
        page.goto(f"{live_server.url}{batch.get_absolute_url()}")
        page.click("button[data-copy]")
        assert page.evaluate("navigator.clipboard.readText()") == batch.api_id
        assert page.locator("button[data-copy]").inner_text() == "Copied"
        assert page.locator("#copy-status").inner_text() == "Copied to the clipboard."
        # u opens the upload page of a workspace the person may upload to.
        page.goto(f"{live_server.url}/w/{batch.workspace.slug}/")
        page.keyboard.press("u")
        page.wait_for_url(f"{live_server.url}/w/{batch.workspace.slug}/upload/")
        assert_no_problems(page)
        context.close()
        browser.close()


def test_a_csv_upload_offers_its_columns_and_the_page_another_workspace(
    batch, live_server, tmp_path
):
    """On a CSV's page, a click on a column puts {column} at the cursor and the preview follows;
    the custom_id column is guessed. The upload page's picker moves to another workspace."""
    from playwright.sync_api import sync_playwright

    ada = batch.workspace.members.get()
    create_workspace("Support", f"{live_server.url}/emulator", "sk-ant-comfort-2",
                     members=[(ada, "submitter")])  # fmt: skip
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("ticket_id,review\nt1,Great service\nt2,Slow and broken\n")
    with sync_playwright() as playwright:
        browser, context, page = open_page(playwright, live_server.url,
                                           viewport={"width": 1366, "height": 900})  # fmt: skip
        log_in(page, "ada", "pw-ada-12345")
        page.goto(f"{live_server.url}/w/research/upload/")
        # Choosing changes nothing until Switch (WCAG 3.2.2: no change of page on input).
        page.select_option("#pick-workspace", "support")
        assert page.url == f"{live_server.url}/w/research/upload/"
        page.click("text=Switch")
        page.wait_for_url(f"{live_server.url}/w/support/upload/")
        assert page.locator("h1").inner_text() == "New batch from a file"
        assert page.input_value("#pick-workspace") == "support"
        page.set_input_files("input[name=file]", str(reviews))
        page.click("text=Check the file")
        page.wait_for_url("**/submissions/**")
        assert page.input_value("select[name=id_column]") == "ticket_id"
        template = page.locator("textarea[name=template]")
        template.fill("Sentiment of: ")
        page.click(".csv-columns button:has-text('review')")
        assert template.input_value() == "Sentiment of: {review}"
        page.locator("#preview", has_text="Great service").wait_for()
        assert page.evaluate("document.activeElement.name") == "template"
        shot(page, "71-csv-columns", full=False)
        context.close()
        browser.close()
