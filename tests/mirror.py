"""Fixtures for the mirror's tests: workspaces whose API is the emulator, in this process.

Import the ones a test module needs (`from tests.mirror import api_in_process, workspace`).
"""

import pytest

from batches import api
from batches.workspaces import create_workspace
from emulator.testing import BASE_URL, httpx_transport, sdk_client

KEY = "sk-ant-test-mirror-0123456789abcdef"


@pytest.fixture
def api_in_process(monkeypatch):
    """Every ApiClient answers from the emulator in this process, and retries without waiting."""
    monkeypatch.setattr(api, "default_transport", httpx_transport())
    monkeypatch.setattr(api, "sleep", lambda seconds: None)


@pytest.fixture
def workspace(db, api_in_process, user, teammate):
    return create_workspace("Research", BASE_URL, KEY, members=[user, teammate])


@pytest.fixture
def sdk():
    return sdk_client(KEY)
