"""The lock files agree with pyproject.toml: a pin changed there without `make lock` fails here,
instead of `make install` quietly installing the old version."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(text: str) -> dict[str, str]:
    """name -> version of each `name==version` line, names normalised, extras dropped."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return found


def locked(name: str) -> dict[str, str]:
    return pins((ROOT / "requirements" / name).read_text(encoding="utf-8"))


def test_every_pin_of_pyproject_is_in_its_lock_file_at_the_same_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    run, dev = locked("run.txt"), locked("dev.txt")
    for wanted, lock in [
        (pins("\n".join(project["dependencies"])), run),
        (pins("\n".join(project["optional-dependencies"]["dev"])), dev),
    ]:
        assert wanted, "no pins read from pyproject.toml"
        stale = {name: version for name, version in wanted.items() if lock.get(name) != version}
        assert not stale, f"run `make lock`: {stale} not in the lock file at these versions"


def test_a_package_both_lock_files_hold_has_one_version():
    run, dev = locked("run.txt"), locked("dev.txt")
    assert {
        name: (run[name], dev[name]) for name in run.keys() & dev.keys() if run[name] != dev[name]
    } == {}


def test_the_installer_is_the_version_the_makefile_locks():
    version = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert version and locked("uv.txt") == {"uv": version.group(1)}
