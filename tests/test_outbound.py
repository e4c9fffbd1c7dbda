"""Where the dashboard sends keys and payloads: checked when saved, and at every connection."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from django.core.exceptions import ValidationError

from batches.client import ApiClient, ApiError
from batches.outbound import (
    UnsafeDestination,
    destination_allowed,
    resolve,
    validate_outbound_url,
)
from batches.outbound_http import BlockedDestination, GuardedTransport
from tests.processes import free_port


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://api.example.com", "http or https"),
        ("not a url at all", "http or https"),
        ("http://127.0.0.1:0x1", "not a URL"),
        ("https://user:pw@api.example.com", "Leave names and passwords out"),
        ("https://10.1.2.3/v1", "10.1.2.3 is a private address: the dashboard does not"),
        ("https://169.254.169.254", "link-local"),
        ("https://[::1]:8443", "loopback"),
        ("https://[::ffff:192.168.0.9]", "private"),
        ("https://224.0.0.1", "multicast"),
        ("https://0.0.0.0", "unspecified"),
        ("https://100.64.0.1", "reserved"),
        ("https://localhost", "localhost resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_a_url_inside_the_network_or_malformed_is_refused_when_saved(settings, url, message):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    with pytest.raises(ValidationError) as refused:
        validate_outbound_url(url)
    assert message in " ".join(refused.value.messages)


def test_production_wants_https_unless_the_host_is_allowed(settings):
    settings.DEBUG = False
    settings.OUTBOUND_ALLOWED_HOSTS = ["sandbox.internal"]
    with pytest.raises(ValidationError, match="Use https"):
        validate_outbound_url("http://93.184.216.34/v1")
    validate_outbound_url("https://93.184.216.34/v1")
    validate_outbound_url("http://sandbox.internal/emulator")  # listed: allowed as it is


def test_allowed_hosts_keep_the_sandbox_and_local_development_working(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    validate_outbound_url("http://127.0.0.1:8000/emulator")
    validate_outbound_url("http://localhost:8765")


def test_only_the_dashboards_own_origin_is_its_own_never_other_ports_of_its_host(settings):
    """Without a listed host, 127.0.0.1 is "this dashboard" only at SITE_URL's scheme and port:
    a base URL on PostgreSQL's or Redis's port of the same machine is refused."""
    settings.OUTBOUND_ALLOWED_HOSTS = []
    settings.SITE_ORIGIN = ("http", "127.0.0.1", 8000)
    validate_outbound_url("http://127.0.0.1:8000/emulator")
    for elsewhere in ("https://127.0.0.1:5432", "https://127.0.0.1:6379/0", "https://127.0.0.1"):
        with pytest.raises(ValidationError, match=r"127\.0\.0\.1 is a loopback address"):
            validate_outbound_url(elsewhere)
    with pytest.raises(ValidationError, match="Use https"):  # plain http elsewhere, in production
        validate_outbound_url("http://127.0.0.1:5432")
    assert destination_allowed("127.0.0.1", 8000)
    assert not destination_allowed("127.0.0.1", 5432)
    with pytest.raises(UnsafeDestination, match="loopback"):
        resolve("127.0.0.1", 6379)


def test_a_listed_host_may_name_its_port(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["emulator.internal:8765", "[::1]:9000", "::1", "typo:x"]
    assert destination_allowed("emulator.internal", 8765)
    assert not destination_allowed("emulator.internal", 8766)
    assert destination_allowed("::1", 1234)  # listed bare: any port
    assert not destination_allowed("typo", 80)


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": [], "has_more": false}')

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    server = HTTPServer(("127.0.0.1", free_port()), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_every_connection_is_checked_after_resolving(settings, local_server):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    with httpx.Client(transport=GuardedTransport()) as client:
        with pytest.raises(BlockedDestination, match=r"127\.0\.0\.1 is a loopback address"):
            client.get(local_server)
        # A name that resolves inside the network is refused as its address would be.
        with pytest.raises(BlockedDestination, match="localhost resolves to"):
            client.get(local_server.replace("127.0.0.1", "localhost"))
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    with httpx.Client(transport=GuardedTransport()) as client:
        assert client.get(local_server).status_code == 200


def test_the_client_sends_no_key_inside_the_network_and_cannot_scan_ports(settings, local_server):
    """An open port and a closed one give the same refusal, before any connection is made."""
    settings.OUTBOUND_ALLOWED_HOSTS = []
    closed = f"http://127.0.0.1:{free_port()}"
    answers = []
    for base in (local_server, closed, "http://10.0.0.1:5432", "http://169.254.169.254"):
        with (
            ApiClient(base, "sk-ant-secret-0000", max_attempts=1) as client,
            pytest.raises(ApiError) as refused,
        ):
            client.list_batches()
        assert refused.value.error_type == "unsafe_destination" and not refused.value.retryable
        answers.append(str(refused.value).split(" address")[0].rsplit(" ", 1)[1])
    assert answers == ["loopback", "loopback", "private", "link-local"]


def test_a_webhook_is_not_posted_inside_the_network(settings, local_server, db, user):
    from batches import notices
    from batches.models import Workspace
    from tests import factories

    settings.OUTBOUND_ALLOWED_HOSTS = []
    workspace = Workspace.objects.create(name="W", slug="w", base_url="https://api.example.com")
    Workspace.objects.filter(pk=workspace.pk).update(notify_webhook_url=local_server)
    batch = factories.batch(workspace)
    assert notices.announce(batch.pk) == {"email": False, "webhook": False}


def test_names_that_do_not_resolve_are_checked_again_when_connecting(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    validate_outbound_url("https://no-such-host.invalid/v1")  # saved; checked at each connection
    with httpx.Client(transport=GuardedTransport()) as client, pytest.raises(httpx.ConnectError):
        client.get("https://no-such-host.invalid/v1")
    assert socket  # the resolver is the system's
