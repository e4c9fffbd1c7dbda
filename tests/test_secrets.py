"""The key never shows: not on an error page (debug on or off), not in a log, not in a task's
arguments."""

import logging

import pytest
from django.test import Client
from django.urls import reverse

from batches.models import Workspace
from tests.mirror import KEY

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
def test_an_error_inside_the_api_client_shows_no_key(workspace, user, settings, caplog, debug):
    settings.DEBUG = debug
    settings.API_TRANSPORT = ""  # the real transport, as in production
    # An address httpx cannot use (what `createworkspace` used to accept).
    Workspace.objects.filter(pk=workspace.pk).update(base_url="http://127.0.0.1:0x1")
    caplog.set_level(logging.DEBUG)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.get(reverse("upload", args=[workspace.slug]))
    page = response.content.decode()
    # The upload page asks for the model list once; an unusable address is an API error
    # like any other, said on the page, not a 500.
    assert response.status_code == 200, page[:2000]
    assert KEY not in page and KEY not in caplog.text


def test_the_debug_page_hides_a_key_wherever_it_sits(workspace, rf, settings):
    """Whatever frame holds a decrypted key (a header mapping deep in httpx, say), the debug
    page shows it masked."""
    import sys

    from django.views.debug import technical_500_response

    settings.DEBUG = True
    workspace.refresh_from_db()

    def deep_in_a_library(headers):
        raise RuntimeError("boom")

    try:
        deep_in_a_library({"x-api-key": workspace.api_key})
    except RuntimeError:
        response = technical_500_response(rf.get("/"), *sys.exc_info())
    page = response.content.decode()
    assert "deep_in_a_library" in page and KEY not in page
    assert "********" in page


def test_tasks_take_primary_keys_only():
    import inspect

    from batches import tasks

    for name, task in vars(tasks).items():
        if hasattr(task, "delay"):
            parameters = inspect.signature(task.run).parameters
            assert all(p.endswith("_pk") for p in parameters), (name, list(parameters))
