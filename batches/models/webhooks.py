"""The deliveries of a workspace's webhook events, one row per event."""

from django.db import models
from django.db.models import Q

from batches.models.workspaces import Workspace


class WebhookDelivery(models.Model):
    """One event for a workspace's webhook, and how its delivery went: signed, retried with
    backoff until it is accepted or given up, and replayable from the settings page."""

    class Event(models.TextChoices):
        BATCH_ENDED = "batch.ended", "Batch ended"
        BATCH_CANCELED = "batch.canceled", "Batch canceled"
        RESULTS_INGESTED = "results.ingested", "Results stored"
        BUDGET_THRESHOLD = "budget.threshold_reached", "Budget threshold reached"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    event = models.CharField(max_length=30, choices=Event.choices)
    # The webhook-id header: the same for every attempt, so a receiver can drop repeats.
    message_id = models.CharField(max_length=40, unique=True)
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_due",
                condition=Q(delivered_at=None, next_attempt_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.message_id}"

    @property
    def outcome(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.next_attempt_at:
            return "retrying" if self.attempts else "pending"
        return "failed"
