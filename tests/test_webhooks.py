"""Signed webhooks: every delivery verifies with the published Standard Webhooks library as a
receiver would, failures are retried with backoff, the delivery log shows them, and any delivery
can be replayed. The receiver is a real HTTP server on 127.0.0.1."""

import io
import json
import re
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from batches import notices, tasks, webhooks
from batches.models import AuditEntry, Batch, WebhookDelivery
from tests import factories

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP endpoint that records what it is sent and answers the statuses it is told to."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def _turn_on(owner_client, workspace, url) -> str:
    """The admin sets the webhook URL on the settings page; returns the secret it shows once."""
    response = owner_client.post(
        reverse("workspace_options", args=[workspace.slug]),
        {"notify_webhook_url": url, "results_downloadable": "on", "daily_tries": "20"},
    )
    assert response.status_code == 200
    workspace.refresh_from_db()
    shown = re.search(r'id="webhook-secret">(whsec_[A-Za-z0-9+/=]+)<', response.content.decode())
    assert shown is not None, "the settings page shows no new secret"
    return shown[1]


def test_a_delivery_verifies_with_the_secret_shown_once(owner_client, workspace, receiver, user):
    secret = _turn_on(owner_client, workspace, receiver.url)
    page = owner_client.get(reverse("workspace_settings", args=[workspace.slug])).content
    assert secret.encode() not in page  # shown once
    workspace.refresh_from_db()
    assert secret not in workspace.webhook_secret_encrypted  # stored encrypted
    batch = factories.batch(workspace, submitted_by=user, name="Evening run")
    assert notices.announce(batch.pk) == {"email": False, "webhook": True}
    [(headers, body)] = receiver.received
    event = Webhook(secret).verify(body, headers)  # raises unless the signature is right
    assert event["type"] == "batch.ended" and event["data"]["id"] == batch.api_id
    assert headers["webhook-id"].startswith("msg_")
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(webhooks.new_secret()).verify(body, headers)
    tampered = body.replace(b"Evening run", b"Morning run")
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(tampered, headers)
    assert AuditEntry.objects.filter(action="secret_change").count() == 1


def test_a_failed_delivery_is_retried_with_backoff_then_logged(owner_client, workspace, receiver):
    secret = _turn_on(owner_client, workspace, receiver.url)
    receiver.statuses = [500, 503]
    batch = factories.batch(workspace, cancel_initiated_at=timezone.now())
    assert notices.announce(batch.pk) == {"email": False, "webhook": False}
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "batch.canceled" and delivery.outcome == "retrying"
    assert delivery.last_status == 500 and delivery.attempts == 1
    assert tasks.retry_webhooks() == 0  # not due yet: 10 s later
    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        assert webhooks.due() == [delivery.pk]
        assert webhooks.deliver(delivery.pk) == "retrying"
    with time_machine.travel(timezone.now() + timedelta(seconds=75)):
        assert webhooks.deliver(delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.delivered_at and delivery.last_status == 200
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids == {delivery.message_id}  # one message, three attempts: receivers drop repeats
    for headers, body in receiver.received:
        Webhook(secret).verify(body, headers)
    log = owner_client.get(reverse("workspace_settings", args=[workspace.slug])).content.decode()
    assert "Batch canceled" in log and "Delivered" in log and "HTTP 200" in log


def test_a_delivery_is_given_up_after_its_attempts_and_can_be_replayed(
    owner_client, workspace, receiver, django_capture_on_commit_callbacks
):
    _turn_on(owner_client, workspace, receiver.url)
    receiver.statuses = [500] * webhooks.MAX_ATTEMPTS
    delivery = webhooks.enqueue(workspace, "results.ingested", {"id": "msgbatch_1"})
    assert delivery is not None
    later = timezone.now()
    for _ in range(webhooks.MAX_ATTEMPTS):
        later += timedelta(hours=7)
        with time_machine.travel(later):
            webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.outcome == "failed" and delivery.attempts == webhooks.MAX_ATTEMPTS
    page = owner_client.get(reverse("workspace_settings", args=[workspace.slug])).content.decode()
    assert "Gave up" in page
    with django_capture_on_commit_callbacks() as enqueued:
        response = owner_client.post(reverse("webhook_replay", args=[workspace.slug, delivery.pk]))
    # The delivery task, after commit (beside it, the audit entry's head is exported).
    tasks = [callback for callback in enqueued if "deliver_webhook" in repr(callback)]
    assert response.status_code == 302 and len(tasks) == 1
    assert webhooks.deliver(delivery.pk) == "delivered"  # what the worker then does
    delivery.refresh_from_db()
    assert delivery.outcome == "delivered"
    assert len(receiver.received) == webhooks.MAX_ATTEMPTS + 1
    assert AuditEntry.objects.filter(action="webhook_replay").count() == 1


def test_results_stored_are_announced(owner_client, workspace, receiver):
    secret = _turn_on(owner_client, workspace, receiver.url)
    batch = factories.with_results(factories.batch(workspace))
    Batch.objects.filter(pk=batch.pk).update(results_ingested=4)
    assert notices.announce_results(batch.pk)
    headers, body = receiver.received[0]
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "results.ingested" and event["data"]["results_stored"] == 4


def test_no_webhook_no_delivery_and_internal_addresses_are_refused(workspace, settings):
    batch = factories.batch(workspace)
    assert notices.announce(batch.pk) == {"email": False, "webhook": False}
    assert not WebhookDelivery.objects.exists()
    # Outside the tests' own hosts, a delivery never reaches an internal address.
    settings.OUTBOUND_ALLOWED_HOSTS = []
    workspace.notify_webhook_url = "http://127.0.0.1:9/hooks"
    workspace.save()
    delivery = webhooks.enqueue(workspace, "batch.ended", {})
    assert delivery is not None
    assert webhooks.deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.last_status is None and delivery.last_error
    assert json.loads(json.dumps(delivery.payload))["type"] == "batch.ended"


def test_a_new_secret_is_shown_once_and_audited(owner_client, workspace, receiver):
    first = _turn_on(owner_client, workspace, receiver.url)
    response = owner_client.post(reverse("webhook_secret", args=[workspace.slug]))
    shown = re.search(r'id="webhook-secret">(whsec_[^<]+)<', response.content.decode())
    assert shown is not None, "the page shows no new secret"
    second = shown[1]
    assert second != first
    assert AuditEntry.objects.filter(action="secret_change").count() == 2
    recorded = str(list(AuditEntry.objects.values_list("before", "after")))
    assert "whsec_" not in recorded
    # The URL is kept as its host only: a webhook URL's path is often its secret.
    assert "/hooks" not in recorded and "127.0.0.1" in recorded


def test_a_new_url_drops_what_was_pending_and_old_deliveries_are_not_replayed(
    owner_client, workspace, receiver
):
    _turn_on(owner_client, workspace, receiver.url)
    receiver.statuses = [500]
    delivery = webhooks.enqueue(workspace, "batch.ended", {"id": "msgbatch_1"})
    assert delivery is not None
    assert webhooks.deliver(delivery.pk) == "retrying"
    other = Receiver()
    try:
        _turn_on(owner_client, workspace, other.url)
        delivery.refresh_from_db()
        assert delivery.outcome == "failed" and "URL changed" in delivery.last_error
        response = owner_client.post(
            reverse("webhook_replay", args=[workspace.slug, delivery.pk]), follow=True
        )
        assert "earlier webhook URL" in response.content.decode()
        assert other.received == [] and len(receiver.received) == 1
    finally:
        other.close()


def test_rotating_the_encryption_keys_keeps_the_webhook_secret(
    owner_client, workspace, receiver, settings
):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from batches import crypto

    secret = _turn_on(owner_client, workspace, receiver.url)
    settings.FERNET_KEYS = [Fernet.generate_key().decode(), *settings.FERNET_KEYS]
    crypto._fernet.cache_clear()
    try:
        call_command("rotatekeys", stdout=io.StringIO())
        settings.FERNET_KEYS = settings.FERNET_KEYS[:1]  # the old key can go
        crypto._fernet.cache_clear()
        workspace.refresh_from_db()
        assert crypto.decrypt(workspace.webhook_secret_encrypted) == secret
        batch = factories.batch(workspace)
        assert notices.announce(batch.pk)["webhook"]
        headers, body = receiver.received[-1]
        Webhook(secret).verify(body, headers)
    finally:
        crypto._fernet.cache_clear()


def test_the_budget_is_announced_at_80_and_100_percent_once_each(
    owner_client, workspace, receiver, user, teammate, mailoutbox
):
    secret = _turn_on(owner_client, workspace, receiver.url)
    user.email, teammate.email = "owner@example.test", "teammate@example.test"
    user.save()
    teammate.save()
    workspace.monthly_budget = Decimal("10.00")
    workspace.notify_email = True
    workspace.save()
    batch = factories.batch(workspace, created_at=timezone.now() - timedelta(minutes=5))

    def spent(amount):
        Batch.objects.filter(pk=batch.pk).update(cost=Decimal(amount), totals_at=timezone.now())
        return notices.announce_budget(workspace.pk)

    assert spent("7.99") == []
    assert spent("8.00") == [80]
    assert spent("9.00") == []  # told once a month
    assert spent("10.00") == [100]
    events = [Webhook(secret).verify(body, headers) for headers, body in receiver.received]
    assert [event["type"] for event in events] == ["budget.threshold_reached"] * 2
    assert events[1]["data"]["threshold_percent"] == 100 and events[1]["data"]["spent"] == "10.0000"
    # Email to the workspace's admins only (the teammate is a submitter).
    assert [message.to for message in mailoutbox] == [["owner@example.test"]] * 2
    assert "80% reached" in mailoutbox[0].body


def test_a_stored_batch_checks_the_budget(workspace, settings, monkeypatch):
    workspace.monthly_budget = Decimal("0.01")
    workspace.save()
    asked: list[int] = []
    monkeypatch.setattr(tasks.announce_budget, "delay", asked.append)
    monkeypatch.setattr(tasks.ingestion, "ingest_results", lambda pk: _Stored())
    tasks.ingest_results(factories.batch(workspace).pk)
    assert asked == [workspace.pk]


class _Stored:
    stored, skipped, error = 4, 0, ""
