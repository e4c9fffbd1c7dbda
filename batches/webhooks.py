"""A workspace's webhook: events signed by the Standard Webhooks scheme, delivered with retries,
logged, and replayable.

Each event is a WebhookDelivery row first, then POSTed with three headers: `webhook-id` (the
same for every attempt, so a receiver can drop repeats), `webhook-timestamp` (seconds), and
`webhook-signature`: `v1,` and the base64 HMAC-SHA256, keyed with the workspace's secret, of
`{id}.{timestamp}.{body}`. The secret (`whsec_` and base64) is made when the URL is set, shown
once, stored encrypted. A delivery that fails (no answer, or not 2xx) is tried again with
backoff, MAX_ATTEMPTS in all, by the beat's sweep; every connection goes through the outbound
guard (no internal address).
"""

import base64
import hashlib
import hmac
import logging
import secrets
import time
from datetime import datetime, timedelta

import httpx
import orjson
from django.db.models import Q
from django.utils import timezone

from batches import crypto
from batches.claims import Claim
from batches.models import WebhookDelivery, Workspace
from batches.outbound_http import GuardedTransport

logger = logging.getLogger(__name__)

Event = WebhookDelivery.Event
TIMEOUT = 10.0
SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)
# After the first attempt: 10 s, 1 min, 5 min, 30 min, 2 h, 6 h; then it is given up (the log
# says so, and it can be replayed).
BACKOFF = [
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
]
MAX_ATTEMPTS = len(BACKOFF) + 1
URL_CHANGED = "The webhook URL changed; not sent."


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def set_new_secret(workspace: Workspace) -> str:
    """A new signing secret for the workspace, saved encrypted; returned to be shown once."""
    secret = new_secret()
    workspace.webhook_secret_encrypted = crypto.encrypt(secret)
    workspace.save(update_fields=["webhook_secret_encrypted"])
    return secret


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def enqueue(workspace: Workspace, event: str, data: dict) -> WebhookDelivery | None:
    """Record an event for the workspace's webhook (None when it has none); the caller has it
    delivered (`deliver`, or the sweep)."""
    if not workspace.notify_webhook_url:
        return None
    if not workspace.webhook_secret_encrypted:
        # A URL set where no secret was shown (the admin, an older install): sign all the same;
        # the settings page makes a new secret to show.
        set_new_secret(workspace)
    message_id = f"msg_{secrets.token_hex(16)}"
    now = timezone.now()
    return WebhookDelivery.objects.create(
        workspace=workspace,
        event=event,
        message_id=message_id,
        url=workspace.notify_webhook_url,
        payload={"type": event, "timestamp": now.isoformat(), "data": data},
        next_attempt_at=now,
    )


# An attempt holds its delivery this long: longer than the slowest attempt can take (connect,
# send and the answer's head, each bounded by TIMEOUT; the answer's body is never read), so the
# sweep never starts a second copy of an attempt still under way.
ATTEMPT_LEASE = timedelta(seconds=TIMEOUT * 4)


def deliver(delivery_pk: int, *, http: httpx.Client | None = None) -> str:
    """One attempt at a delivery that is due; schedules the next one when it fails."""
    claim = Claim.take(
        WebhookDelivery,
        delivery_pk,
        "claimed_until",
        ATTEMPT_LEASE,
        where=Q(delivered_at=None, next_attempt_at__lte=timezone.now()),
    )
    if claim is None:
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("workspace").get(pk=delivery_pk)
    if delivery.url != delivery.workspace.notify_webhook_url:
        # The workspace's webhook moved (or was turned off): never to the old address.
        claim.release(next_attempt_at=None, last_error=URL_CHANGED)
        return "dropped"
    try:
        secret = crypto.decrypt(delivery.workspace.webhook_secret_encrypted or "")
    except Exception as failure:  # a secret no FERNET_KEYS key opens: a failed attempt, said
        claim.release(next_attempt_at=None, last_error=f"Cannot sign: {failure}"[:300])
        return "failed"
    body = orjson.dumps(delivery.payload)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, delivery.message_id, timestamp, body),
    }
    own = http is None
    # Every connection checked: a webhook is never posted inside this network.
    http = http or httpx.Client(timeout=TIMEOUT, transport=GuardedTransport())
    status, error = None, ""
    try:
        # Streamed and closed unread: only the status counts, whatever the receiver sends.
        with http.stream("POST", delivery.url, content=body, headers=headers) as response:
            status = response.status_code
        if not response.is_success:
            error = f"answered {status}"
    except httpx.HTTPError as failure:
        error = (str(failure) or type(failure).__name__)[:300]
    finally:
        if own:
            http.close()
    now = timezone.now()
    attempts = delivery.attempts + 1
    if not error:
        claim.release(attempts=attempts, last_attempt_at=now, last_status=status,
                      last_error="", delivered_at=now, next_attempt_at=None)  # fmt: skip
        return "delivered"
    logger.warning("Webhook %s to %s failed: %s", delivery.message_id, delivery.url, error)
    retry_at = now + BACKOFF[attempts - 1] if attempts < MAX_ATTEMPTS else None
    claim.release(attempts=attempts, last_attempt_at=now, last_status=status,
                  last_error=error, next_attempt_at=retry_at)  # fmt: skip
    return "retrying" if retry_at else "failed"


def due(now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(delivered_at=None, next_attempt_at__lte=now)
        .filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
        .values_list("pk", flat=True)[:500]
    )


def replay(delivery: WebhookDelivery) -> bool:
    """Send a delivery again now (the same id and payload; a receiver that had it drops it).
    False when the workspace's webhook has moved since: it never goes to an old address."""
    if delivery.url != delivery.workspace.notify_webhook_url:
        return False
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        delivered_at=None, next_attempt_at=timezone.now()
    )
    return True


def drop_pending(workspace: Workspace) -> int:
    """The webhook's URL changed or was cleared: what was not delivered is not sent."""
    return WebhookDelivery.objects.filter(workspace=workspace, delivered_at=None).update(
        next_attempt_at=None, last_error=URL_CHANGED
    )


def recent(workspace: Workspace, limit: int = 20) -> list[WebhookDelivery]:
    return list(workspace.webhook_deliveries.order_by("-created_at", "-id")[:limit])
