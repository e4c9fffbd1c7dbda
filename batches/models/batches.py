"""The mirror of a workspace's Message Batches: each batch as the API reports it, what
the dashboard knows of it besides (who sent it, its totals, how its results' ingestion
goes, a pending action), and its labels."""

from datetime import datetime, timedelta
from typing import Self

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from batches.changes import StampedQuerySet
from batches.models.workspaces import Workspace


class BatchQuerySet(StampedQuerySet):
    def visible_to(self, user: User | AnonymousUser) -> Self:
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(workspace__members=user)

    def active(self) -> Self:
        return self.filter(processing_status__in=Batch.ACTIVE)

    def running(self) -> Self:
        """In progress or canceling, and still in the API: what the header counts."""
        return self.active().filter(gone_at=None)

    def with_problems(self) -> Self:
        return self.filter(Q(errored__gt=0) | Q(expired__gt=0))

    def due_for_poll(self, now: datetime) -> Self:
        return self.active().filter(gone_at__isnull=True, next_poll_at__lte=now)

    def needing_ingestion(self, now: datetime) -> Self:
        """Ended, with results to fetch, not yet all stored, and not held by a running
        ingestion."""
        return self.filter(Batch.results_fetchable(now)).filter(
            Q(ingest_claimed_until__isnull=True) | Q(ingest_claimed_until__lt=now)
        )


class Batch(models.Model):
    """The mirror of one Message Batch, plus what the dashboard knows that the API does not."""

    class Status(models.TextChoices):
        # Exactly the API's values: the dashboard's own states never mix in here.
        IN_PROGRESS = "in_progress", "In progress"
        CANCELING = "canceling", "Canceling"
        ENDED = "ended", "Ended"

    ACTIVE = (Status.IN_PROGRESS, Status.CANCELING)
    TERMINAL = (Status.ENDED,)
    # How long a batch that answers 404 is given before it counts as deleted: the API can
    # answer 404 for a batch created a moment ago.
    NOT_FOUND_GRACE = timedelta(minutes=2)
    # After this many failed attempts (backing off up to an hour apart) ingestion gives up; the
    # error stays on the batch page and "Refresh now" tries again.
    MAX_INGEST_ATTEMPTS = 12

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="batches")
    api_id = models.CharField("API id", max_length=100)
    processing_status = models.CharField(max_length=20, choices=Status.choices)
    processing = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    canceled = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancel_initiated_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    results_url = models.URLField(max_length=500, blank=True)

    # Local knowledge.
    name = models.CharField(max_length=200, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="submitted_batches",
    )
    # Who asked for the batch's cancel and its deletion (the submitter is above; resubmissions
    # name theirs as Submission.created_by).
    canceled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    source_filename = models.CharField(max_length=255, blank=True)
    submission = models.ForeignKey(
        "Submission", null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    # When the submitter was told the batch ended (toast, email, webhook): told once.
    end_notified_at = models.DateTimeField(null=True, blank=True)
    # When the workspace's email and webhook notices of the batch's end went out: sent once.
    end_announced_at = models.DateTimeField(null=True, blank=True)
    # Totals of the stored results' usage, worked out once after ingestion (batches.totals).
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_creation_input_tokens = models.BigIntegerField(default=0)
    cache_read_input_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="USD, batch prices."
    )
    cost_incomplete = models.BooleanField(
        default=False, help_text="Some results used a model the price table does not know."
    )
    totals_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(
        null=True, blank=True, help_text="When the batch was found deleted from the API."
    )
    first_not_found_at = models.DateTimeField(null=True, blank=True)

    # Set only when every result is stored: a stream that ended short, or anything else that
    # was not the whole results file, is a failure that is tried again (ingest_error says why).
    results_ingested_at = models.DateTimeField(null=True, blank=True)
    results_ingested = models.PositiveIntegerField(default=0)
    results_file = models.FileField(upload_to="results/", max_length=400, blank=True)
    ingest_error = models.TextField(blank=True)
    ingest_attempts = models.PositiveIntegerField(default=0)
    # The lease of the ingestion that runs now (renewed as it goes; it lapses if that process
    # dies) ...
    ingest_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    # ... and, apart from it, when a failed ingestion may be tried again (backing off).
    ingest_not_before = models.DateTimeField(null=True, blank=True, editable=False)
    # How far the last ingestion got: its first this-many lines are stored, and the digest of
    # their custom_ids says whether a new attempt's stream starts with the same ones (then it
    # skips storing them again).
    ingest_checkpoint_lines = models.PositiveIntegerField(default=0, editable=False)
    ingest_checkpoint_digest = models.CharField(max_length=64, blank=True, editable=False)
    # The results_ingested_at of the results the text search index holds (batches.search); the
    # explorer uses the index only while the two agree.
    search_indexed_at = models.DateTimeField(null=True, blank=True, editable=False)

    # An action a person asked for (cancel, delete, refresh) runs as a task: the page shows it
    # pending until the task has the API's answer.
    class Action(models.TextChoices):
        CANCEL = "cancel", "Cancel"
        DELETE = "delete", "Delete, keep the copy here"
        REMOVE = "remove", "Delete, and remove it here"
        REFRESH = "refresh", "Refresh"

    pending_action = models.CharField(max_length=10, choices=Action.choices, blank=True)
    pending_action_at = models.DateTimeField(null=True, blank=True)
    action_error = models.TextField(blank=True)

    objects = BatchQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "api_id"], name="batch_unique_api_id"),
        ]
        indexes = [
            # The sync's query for active batches the listing did not reach:
            # Batch.objects.due_for_poll(now), those whose next poll time has come.
            models.Index(
                fields=["next_poll_at"],
                name="batch_due_for_poll",
                condition=Q(processing_status__in=["in_progress", "canceling"], gone_at=None),
            ),
            # The batch lists: a workspace's batches, newest first.
            models.Index(fields=["workspace", "-created_at"], name="batch_workspace_newest"),
            models.Index(fields=["-created_at"], name="batch_newest"),
        ]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.name or self.api_id

    def get_absolute_url(self) -> str:
        return reverse("batch_detail", args=[self.workspace.slug, self.api_id])

    @property
    def display_name(self) -> str:
        return self.name or self.api_id

    @staticmethod
    def results_fetchable(now: datetime) -> Q:
        """Ended, with results the API still has, not yet all stored, and (after a failure)
        due for another attempt."""
        return (
            Q(
                processing_status=Batch.Status.ENDED,
                gone_at__isnull=True,
                results_ingested_at__isnull=True,
                archived_at__isnull=True,
                ingest_attempts__lt=Batch.MAX_INGEST_ATTEMPTS,
            )
            & ~Q(results_url="")
            & (Q(ingest_not_before__isnull=True) | Q(ingest_not_before__lte=now))
        )

    @property
    def is_active(self) -> bool:
        return self.processing_status in self.ACTIVE

    @property
    def is_ended(self) -> bool:
        return self.processing_status == self.Status.ENDED

    @property
    def results_complete(self) -> bool:
        """Every result is stored here (only then is ingestion final)."""
        return self.results_ingested_at is not None

    @property
    def results_state(self) -> str:
        """What became of the batch's results here, in one word the pages explain:
        stored, waiting (the batch runs), fetching, retrying (a fetch failed; another comes),
        gave_up (the attempts are used up: "Refresh now" tries again), archived (the API no
        longer has them) or deleted (the batch was deleted before they were stored)."""
        from django.utils import timezone

        if self.results_complete:
            return "stored"
        if not self.is_ended:
            return "deleted" if self.gone_at else "waiting"
        if self.gone_at:
            return "deleted"
        if self.archived_at:
            return "archived"
        if not self.results_url:
            return "waiting"  # the API gives the results' address a moment after the end
        if self.ingest_attempts >= self.MAX_INGEST_ATTEMPTS:
            return "gave_up"
        if self.ingest_error and self.ingest_not_before and self.ingest_not_before > timezone.now():
            return "retrying"
        return "fetching"

    @property
    def still_changing(self) -> bool:
        """Worth polling: an action is pending, the batch runs, or its results are on their way
        (not while a failed fetch waits minutes for its next attempt: the page says when)."""
        if self.pending_action:
            return True
        if self.gone_at:
            return False
        return self.is_active or self.results_state == "fetching"

    @property
    def outcome(self) -> str:
        """How the batch stands or ended, in one word the badges show: in_progress, canceling,
        ended, canceled, expired, ended_with_problems, or deleted (gone from the API)."""
        if self.gone_at:
            return "deleted"
        if not self.is_ended:
            return self.processing_status if self.is_active else "unknown"
        if self.canceled and self.cancel_initiated_at:
            return "canceled"
        if self.expired and not self.succeeded and not self.errored:
            return "expired"
        if self.errored or self.expired:
            return "ended_with_problems"
        return "ended"

    @property
    def ended_summary(self) -> str:
        """`1,200 succeeded, 3 errored`: the counts a notice of its end gives."""
        parts = [f"{self.succeeded:,} succeeded"]
        parts += [
            f"{getattr(self, name):,} {name}" for name in PROBLEM_COUNTS if getattr(self, name)
        ]
        return ", ".join(parts)

    @property
    def has_problems(self) -> bool:
        return bool(self.errored or self.expired)

    @property
    def resubmit_unavailable_reason(self) -> str:
        """Why this batch's requests cannot be sent again from here, or "" when they can."""
        if self.submission_id is None:
            return (
                "This batch was created outside the dashboard, so its requests are not stored "
                "here and cannot be sent again from this page."
            )
        if not self.is_ended:
            return "Requests can be resubmitted once the batch has ended."
        if not self.results_complete:
            return "The results are not stored yet; resubmitting is possible once they are."
        return ""

    @property
    def can_append_answers(self) -> bool:
        """The batch came from a CSV upload whose file is still stored: its answers can be
        added to it as a column. (Whether the stored file is still readable is found out when
        it is read: a page does not touch storage to render a link.)"""
        submission = self.submission
        return bool(submission is not None and submission.is_csv and submission.upload)

    @property
    def created_outside(self) -> bool:
        """Created by a script or another tool with the same key, not through the dashboard."""
        return self.submission_id is None and self.submitted_by_id is None

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired

    @property
    def results_available_until(self) -> datetime:
        return self.created_at + timedelta(days=29)

    @property
    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_FIELDS}

    @staticmethod
    def fields_from_api(data: dict) -> dict:
        """The model's API-mirrored fields from a MessageBatch object."""
        counts = data.get("request_counts") or {}
        return {
            "processing_status": data["processing_status"],
            **{name: int(counts.get(name, 0)) for name in COUNT_FIELDS},
            "created_at": _parse_time(data["created_at"]),
            "expires_at": _parse_time(data.get("expires_at")),
            "ended_at": _parse_time(data.get("ended_at")),
            "cancel_initiated_at": _parse_time(data.get("cancel_initiated_at")),
            "archived_at": _parse_time(data.get("archived_at")),
            "results_url": data.get("results_url") or "",
        }


COUNT_FIELDS = ("processing", "succeeded", "errored", "canceled", "expired")
PROBLEM_COUNTS = ("errored", "expired", "canceled")


def _parse_time(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


LABEL_PATTERN = r"\A[^\x00-\x1f,]{1,40}\Z"


class BatchLabel(models.Model):
    """A free-text label on a batch (several per batch): set by a submitter on the batch page or
    at upload, and filtered on in the lists."""

    MAX_PER_BATCH = 10

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=40)

    objects = StampedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "name"], name="batch_label_once"),
        ]
        indexes = [models.Index(fields=["name", "batch"], name="batch_label_by_name")]

    def __str__(self) -> str:
        return self.name
