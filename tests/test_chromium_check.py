"""The browser tests' Chromium check: a missing Chromium skips them on a developer's machine and
fails them under CI, where a skip would let a broken setup pass."""

import pytest

from tests.browser import check_chromium, when_chromium_is_missing


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_with_ci_set_a_missing_chromium_fails(ci):
    assert when_chromium_is_missing(ci) == "fail"


@pytest.mark.parametrize("ci", [None, ""])
def test_without_ci_a_missing_chromium_skips(ci):
    assert when_chromium_is_missing(ci) == "skip"


def test_the_check_fails_or_skips_only_when_chromium_is_missing(tmp_path):
    missing = tmp_path / "chromium"
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        check_chromium(missing, "true")
    with pytest.raises(pytest.skip.Exception, match="Debian's package chromium"):
        check_chromium(missing, "")
    missing.touch()
    check_chromium(missing, "true")  # there: the test runs
