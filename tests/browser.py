"""What every browser test shares: Debian's Chromium driven by Playwright, a page that fails the
test on any Content-Security-Policy violation or script error, and screenshots.

Each page also listens for `securitypolicyviolation` events, which Chromium raises for every
refused inline script or style, so a violation fails the test even when nothing is logged.
"""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
# Console errors about a response's status (a download that answers 404 on purpose) are the
# network's, not the page's.
NETWORK_NOISE = ("Failed to load resource",)
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


class Problems:
    """Console errors, CSP violations and uncaught exceptions a page produced."""

    def __init__(self, page):
        self.found: list[str] = []
        page.on("pageerror", lambda error: self.found.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message):
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.found.append(f"CSP: {text}")
        elif (
            message.type == "error"
            and "favicon.ico" not in text
            and "Failed to load resource" not in text
        ):
            self.found.append(f"console error: {text}")


def open_page(playwright, base_url: str, **context_options):
    """A new page on `base_url`, watched for problems (its `problems` attribute)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    context = browser.new_context(**context_options)
    context.add_init_script(WATCH_VIOLATIONS)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.base = base_url
    page.problems = Problems(page)
    return browser, context, page


def log_in(page, username: str, password: str) -> None:
    """Log in through the login page and land on the batch list."""
    page.goto(f"{page.base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{page.base}/")


def assert_no_problems(page) -> None:
    try:
        violations = page.evaluate("window.__violations || []")
    except Exception:  # the page is gone (closed, navigating): the listeners saw what it did
        violations = []
    found = page.problems.found + [f"CSP violation: {item}" for item in violations]
    assert not found, found


def shot(page, name, *, full=True):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    assert_no_problems(page)
    return path


needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"
)
