"""What the emulator stores: batches, their requests in compressed chunks, per-key faults.

A batch's visible state is derived from the clock on every read (see `emulator.processing`); the
row only records what cannot be derived: when it was created, how fast it runs, when someone asked
to cancel it, and (once, when it is first seen past its end) its final counts.
"""

import json
import zlib
from datetime import timedelta

from django.db import models

# Requests are stored this many to a row: a 100,000-request batch is 50 rows, not 100,000.
CHUNK_SIZE = 2000
EXPIRY = timedelta(hours=24)
RESULTS_KEPT = timedelta(days=29)


class ProcessingStatus(models.TextChoices):
    IN_PROGRESS = "in_progress"
    CANCELING = "canceling"
    ENDED = "ended"


class EmulatedBatchQuerySet(models.QuerySet):
    def in_workspace(self, workspace: str) -> "EmulatedBatchQuerySet":
        return self.filter(workspace=workspace)

    def newest_first(self) -> "EmulatedBatchQuerySet":
        return self.order_by("-seq")


class EmulatedBatch(models.Model):
    # The list endpoint pages newest first by this counter: creation times can tie, ids are random.
    seq = models.BigAutoField(primary_key=True)
    batch_id = models.CharField(max_length=64, unique=True)
    # A hash of the API key: each distinct key is its own workspace, and no key is stored.
    workspace = models.CharField(max_length=64)
    request_count = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # The speed this batch was created with, so a later settings change does not rewrite history.
    base_seconds = models.FloatField()
    seconds_per_request = models.FloatField()
    cancel_initiated_at = models.DateTimeField(null=True, blank=True)
    cancel_seconds = models.FloatField(default=0.0)
    # The beta features its create call named (anthropic-beta): they change what its requests
    # may ask for (foundations.betas).
    betas = models.JSONField(default=list, blank=True)
    # Set once, when the batch is first seen past its end, with the final counts below.
    ended_at = models.DateTimeField(null=True, blank=True)
    succeeded = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    canceled = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)

    objects = EmulatedBatchQuerySet.as_manager()

    class Meta:
        indexes = [
            # The list endpoint: one workspace's batches, newest first.
            models.Index(fields=["workspace", "-seq"], name="emulator_batch_ws_seq"),
        ]

    def __str__(self) -> str:
        return self.batch_id


class EmulatedRequestChunk(models.Model):
    """Up to CHUNK_SIZE requests of a batch as zlib-compressed JSON.

    `outcomes` holds one letter per request, "s" (will succeed) or "e" (will error), decided when
    the batch is created, so counts never need the requests decompressed.
    """

    batch = models.ForeignKey(EmulatedBatch, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    first_index = models.PositiveIntegerField()
    data = models.BinaryField()
    outcomes = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "number"], name="emulator_chunk_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} chunk {self.number}"

    @staticmethod
    def pack(requests: list) -> bytes:
        """`requests` as [[custom_id, params], ...], compressed for storage."""
        text = json.dumps(requests, separators=(",", ":"), ensure_ascii=False)
        return zlib.compress(text.encode(), level=1)

    def unpack(self) -> list:
        return json.loads(zlib.decompress(bytes(self.data)))


class EmulatedKeyFaults(models.Model):
    """Faults for one API key, for tests and rehearsals: see `emulator.faults.set_key_faults`."""

    workspace = models.CharField(max_length=64, unique=True)
    rate_429 = models.FloatField(default=0.0)
    rate_500 = models.FloatField(default=0.0)
    rate_529 = models.FloatField(default=0.0)
    retry_after_seconds = models.PositiveIntegerField(default=1)
    latency_seconds = models.FloatField(default=0.0)
    cut_results = models.BooleanField(default=False)
    # Results streams end cleanly halfway (no broken line: just fewer results than requests).
    short_results = models.BooleanField(default=False)
    # The results URL answers a redirect to another host instead of the results.
    redirect_results = models.BooleanField(default=False)
    # Batches this key creates run past their 24 h expiry, so their unfinished requests expire.
    slow_batches = models.BooleanField(default=False)
    # The next this-many creates make their batch but answer 500, as if the answer were lost on
    # the way: what a client must survive without creating the batch twice.
    lose_create_answers = models.PositiveIntegerField(default=0)
    # With a lost answer, this many other batches of the same size are created at that moment,
    # as if another tool of the workspace submitted them: what a lookup for the lost batch must
    # not guess among.
    lookalikes_with_lost_answer = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"faults for {self.workspace[:8]}"
