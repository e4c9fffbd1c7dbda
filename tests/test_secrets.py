"""The key never shows: not on an error page (debug on or off), not in a log, not in a task's
arguments."""

import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from batches.models import Workspace
from tests.mirror import KEY

pytestmark = pytest.mark.django_db
NEW_KEY = "sk-ant-api03-typed-into-the-form-0000"


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


class _WrongShape(BaseHTTPRequestHandler):
    """A server that answers every call with JSON the API never gives."""

    def do_GET(self):
        body = b'{"type": "page", "items": []}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def wrong_shape_server():
    server = HTTPServer(("127.0.0.1", 0), _WrongShape)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("debug", [True, False])
def test_a_server_answering_json_of_the_wrong_shape_is_a_message(
    owner_client, workspace, settings, wrong_shape_server, debug
):
    settings.DEBUG = debug
    settings.API_TRANSPORT = ""  # the real transport, as in production
    url = reverse("workspace_connection", args=[workspace.slug])
    answer = owner_client.post(url, {"base_url": wrong_shape_server, "api_key": NEW_KEY})
    page = answer.content.decode()
    assert answer.status_code == 400
    assert "The API did not accept it" in page and "could not be read" in page
    assert "is not a page of batches" in page and NEW_KEY not in page


def exploding_transport():
    """A transport that fails in a way nothing expects (for the debug page's test)."""

    def explode(request):
        raise RuntimeError("an unexpected failure deep in the client")

    return httpx.MockTransport(explode)


def test_the_debug_page_of_the_connection_form_hides_the_new_key(user, workspace, settings):
    """A key typed into Settings -> connection, never encrypted yet, is hidden on the debug
    page of a failure while it is tried: the form's functions mark it, and the filter works
    with DEBUG on too."""
    settings.DEBUG = True
    settings.API_TRANSPORT = "tests.test_secrets.exploding_transport"
    client = Client(raise_request_exception=False)
    client.force_login(user)
    url = reverse("workspace_connection", args=[workspace.slug])
    answer = client.post(url, {"base_url": "https://api.example.com", "api_key": NEW_KEY})
    page = answer.content.decode()
    assert answer.status_code == 500 and "an unexpected failure deep in the client" in page
    assert "_try" in page and NEW_KEY not in page
