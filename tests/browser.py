"""What every browser test shares: Debian's Chromium driven by Playwright, a page that fails the
test on any Content-Security-Policy violation, script error or WCAG 2.2 AA violation (axe-core,
at every screenshot and at the end), and screenshots.

Each page also listens for `securitypolicyviolation` events, which Chromium raises for every
refused inline script or style, so a violation fails the test even when nothing is logged.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:  # Playwright is imported by the browser tests themselves, when they run
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

    class WatchedPage(Page):
        """A page as `open_page` gives it: Playwright's own, with two attributes set on it
        (a name for the type checker only: no page is of this class)."""

        base: str
        problems: "Problems"


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

    def __init__(self, page: "Page") -> None:
        self.found: list[str] = []
        page.on("pageerror", lambda error: self.found.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message: "ConsoleMessage") -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.found.append(f"CSP: {text}")
        elif (
            message.type == "error"
            and "favicon.ico" not in text
            and "Failed to load resource" not in text
        ):
            self.found.append(f"console error: {text}")


def open_page(
    playwright: "Playwright", base_url: str, **context_options: Any
) -> "tuple[Browser, BrowserContext, WatchedPage]":
    """A new page on `base_url`, watched for problems (its `problems` attribute)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    context = browser.new_context(**context_options)
    context.add_init_script(WATCH_VIOLATIONS)
    context.set_default_timeout(20_000)
    page = cast("WatchedPage", context.new_page())
    page.base = base_url
    page.problems = Problems(page)
    return browser, context, page


def log_in(page: "WatchedPage", username: str, password: str) -> None:
    """Log in through the login page and land on the batch list."""
    page.goto(f"{page.base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{page.base}/")


# axe-core (from the npm registry, test-only, its version in the file name) checks each page
# state the tests see against WCAG 2.2 A and AA.
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
AXE_RUN = """async (tags) => {
  const found = await axe.run(document, {runOnly: {type: "tag", values: tags},
                                         resultTypes: ["violations"]});
  return found.violations.map((rule) => `${rule.id} (${rule.impact}): ${rule.help}: ` +
    rule.nodes.slice(0, 3).map((node) => node.target.join(" ") + " " + node.html.slice(0, 160))
      .join(", ") + " on " + location.pathname);
}"""


def accessibility_problems(page: "Page") -> list[str]:
    """What axe-core finds against WCAG 2.2 AA in the page as it is now. Loaded by the
    debugging protocol's evaluate, which the page's Content-Security-Policy does not govern."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate(AXE_RUN, AXE_TAGS)


def assert_no_problems(page: "WatchedPage") -> None:
    try:
        violations = page.evaluate("window.__violations || []")
    except Exception:  # the page is gone (closed): the listeners saw what it did
        violations, inaccessible = [], []
    else:
        try:
            inaccessible = accessibility_problems(page)
        except Exception as error:  # a navigation began: check the page it lands on
            if "context was destroyed" not in str(error):
                raise
            page.wait_for_load_state()
            inaccessible = accessibility_problems(page)
    found = (
        page.problems.found
        + [f"CSP violation: {item}" for item in violations]
        + [f"WCAG: {item}" for item in inaccessible]
    )
    assert not found, found


def shot(page: "WatchedPage", name: str, *, full: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    assert_no_problems(page)
    return path


def when_chromium_is_missing(ci: str | None) -> str:
    """What a browser test does on a machine without Chromium, given the CI variable: "fail"
    when it is set and not empty (there a missing browser is a broken setup, which a skip would
    hide behind a green run), "skip" on a developer's machine."""
    return "fail" if ci else "skip"


def check_chromium(path: Path, ci: str | None) -> None:
    """Nothing when Chromium is at `path`; else skips the test, or fails it (CI set)."""
    if path.exists():
        return
    missing = f"no Chromium at {path}: install Debian's package chromium (apt-get install chromium)"
    if when_chromium_is_missing(ci) == "fail":
        pytest.fail(f"{missing}. CI is set: a missing browser fails the run.", pytrace=False)
    pytest.skip(missing)


@pytest.fixture
def chromium() -> str:
    """The Chromium the browser tests drive. Without it a test skips, or fails when CI is set."""
    check_chromium(Path(CHROMIUM), os.environ.get("CI"))
    return CHROMIUM


# The fixture is registered for the whole suite by tests/conftest.py (pytest_plugins).
needs_chromium = pytest.mark.usefixtures("chromium")
