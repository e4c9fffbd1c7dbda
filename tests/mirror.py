"""Fixtures for the mirror's tests: workspaces whose API is the emulator, in this process.

Loaded for the whole suite by tests/conftest.py.
"""

import pytest

from batches.workspaces import create_workspace
from emulator.testing import BASE_URL, sdk_client

KEY = "sk-ant-test-mirror-0123456789abcdef"


@pytest.fixture
def api_in_process(settings):
    """Every ApiClient answers from the emulator in this process, through the client's own seam
    (the API_TRANSPORT setting), not over the network."""
    settings.API_TRANSPORT = "emulator.testing.httpx_transport"


@pytest.fixture
def workspace(db, api_in_process, user, teammate):
    """Research: its owner is an admin, the teammate a submitter."""
    return create_workspace(
        "Research", BASE_URL, KEY, members=[(user, "admin"), (teammate, "submitter")]
    )


@pytest.fixture
def sdk():
    return sdk_client(KEY)
