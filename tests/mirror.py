"""Fixtures for the mirror's tests: workspaces whose API is the emulator, in this process.

Loaded for the whole suite by tests/conftest.py.
"""

from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import User
from pytest_django import Settings

from batches.models import Workspace
from batches.workspaces import create_workspace
from emulator.testing import BASE_URL, sdk_client

if TYPE_CHECKING:  # a test-only dependency, imported by `sdk_client` when a test uses it
    import anthropic

KEY = "sk-ant-test-mirror-0123456789abcdef"


@pytest.fixture
def api_in_process(settings: Settings) -> None:
    """Every ApiClient answers from the emulator in this process, through the client's own seam
    (the API_TRANSPORT setting), not over the network."""
    settings.API_TRANSPORT = "emulator.testing.httpx_transport"


@pytest.fixture
def workspace(db: None, api_in_process: None, user: User, teammate: User) -> Workspace:
    """Research: its owner is an admin, the teammate a submitter."""
    return create_workspace(
        "Research", BASE_URL, KEY, members=[(user, "admin"), (teammate, "submitter")]
    )


@pytest.fixture
def sdk() -> "anthropic.Anthropic":
    return sdk_client(KEY)
