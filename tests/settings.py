"""Settings for the test suite: the project's settings, with a few test-only choices.

The environment defaults are set before the project's settings module reads them, so a test run
never shares the embedded Redis (and its queues) with a `make run` on the same checkout.
"""

import os

os.environ.setdefault("EMBEDDED_REDIS_PORT", "6391")

from dashboard.settings import *  # noqa: F403
from dashboard.settings import DATABASES, VAR_DIR

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
