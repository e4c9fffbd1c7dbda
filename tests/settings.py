"""Settings for the test suite: the project's settings, with a few test-only choices.

The environment defaults are set before the project's settings module reads them, so a test run
never shares the embedded Redis (and its queues) with a `make run` on the same checkout.
"""

import os
from pathlib import Path

os.environ.setdefault("EMBEDDED_REDIS_PORT", "6391")
# The run's cache keys (and those of the processes it starts) under a prefix of their own, so a
# shared Redis's other keys are never read or emptied (tests/conftest.py empties them per test).
os.environ.setdefault("CACHE_KEY_PREFIX", f"test-{os.getpid()}")

from dashboard.settings import *  # noqa: F403
from dashboard.settings import DATABASES, STORAGES, VAR_DIR

# Stored files of one run (and of the processes it starts, which inherit the variable) go to a
# folder of their own, emptied at the end (tests/conftest.py), never to var/media.
os.environ.setdefault("TEST_MEDIA_ROOT", str(VAR_DIR / f"test-media-{os.getpid()}"))
MEDIA_ROOT = Path(os.environ["TEST_MEDIA_ROOT"])
_default_storage = STORAGES["default"]
assert isinstance(_default_storage, dict)  # STORAGES's type, inferred, says only "objects"
if _default_storage["BACKEND"] == "foundations.storage.LocalFileStorage":
    _default_storage["OPTIONS"]["location"] = str(MEDIA_ROOT)

# Hashing passwords slowly is the point in production and a waste of minutes in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Processes the tests start (a Celery worker, the supervisor) need a database file they can open;
# an in-memory SQLite database would be invisible to them.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One file per run, so two runs on one checkout never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}

# Threads the tests start (a Celery worker's pool, background syncs) each open a connection;
# closing it after every task lets the test database be dropped at the end of the run.
DATABASES["default"]["CONN_MAX_AGE"] = 0

# Retries come at once (a test that times a wait sets these itself).
API_RETRY_INITIAL_WAIT_SECONDS = 0.0
API_RETRY_MAX_WAIT_SECONDS = 0.0

# The suite makes calls far faster than a team would; the tests of the limit set their own.
API_RATE_LIMIT_PER_MINUTE = 1_000_000

# The in-process emulator's host ("testserver", http) counts as this machine's own, like the
# Sandbox's: the tests run with DEBUG off, as Django's test runner sets it.
from dashboard.settings import OUTBOUND_ALLOWED_HOSTS  # noqa: E402

OUTBOUND_ALLOWED_HOSTS = [*OUTBOUND_ALLOWED_HOSTS, "testserver", "127.0.0.1", "localhost"]
