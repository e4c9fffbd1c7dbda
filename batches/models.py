"""Workspaces, the mirror of their Message Batches, and the batches' results."""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify
from django.views.decorators.debug import sensitive_variables

from batches import crypto
from batches.changes import StampedQuerySet
from batches.outbound import validate_outbound_url


class WorkspaceQuerySet(StampedQuerySet):
    def visible_to(self, user):
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:  # the site's superuser is an admin of every workspace
            return self.all()
        return self.filter(members=user)


class Workspace(models.Model):
    """One API key's view of the API: every batch the key can see belongs to it."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    base_url = models.URLField(
        "API base URL",
        max_length=300,
        validators=[validate_outbound_url],
        help_text="https://api.anthropic.com for the Anthropic API.",
    )
    api_key_encrypted = models.TextField(editable=False)
    api_key_hint = models.CharField(max_length=32, editable=False)
    is_sandbox = models.BooleanField(default=False, editable=False)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="workspaces", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Off: only the workspace's admins may download results (files of answers leave the
    # dashboard's access rules behind them).
    results_downloadable = models.BooleanField(
        "Results may be downloaded",
        default=True,
        help_text="Off: viewers and submitters read results here but cannot download them.",
    )

    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_full_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    # A sync holds the workspace until this time; a crashed one lets go when it passes.
    sync_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The workspace's `/v1/models`, refreshed by the sync: the upload form's choices and what the
    # validator accepts.
    models_available = models.JSONField(default=list, blank=True, editable=False)
    models_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Finished-batch notices beyond the submitter's toast.
    notify_email = models.BooleanField(
        default=False, help_text="Email the submitter when one of their batches ends."
    )
    notify_webhook_url = models.URLField(
        max_length=500,
        blank=True,
        validators=[validate_outbound_url],
        help_text="POST a signed JSON notice here when a batch ends, is canceled, or its "
        "results are stored.",
    )
    # A month's spending limit (USD, batch prices). Uploads whose most expensive outcome would
    # go over what is left need an admin's confirmation; notices go out at 80% and 100%.
    monthly_budget = models.DecimalField(
        "Monthly budget (USD)",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Leave empty for no budget. Months run by the dashboard's time zone.",
    )
    # "Try first": how many requests of checked uploads may be sent on their own through the
    # Messages API (at the standard price) in any 24 hours.
    daily_tries = models.PositiveIntegerField(
        "Tries a day",
        default=20,
        validators=[MaxValueValidator(1000)],
        help_text="How many requests of checked uploads may be tried through the Messages API, "
        "at the standard price, in any 24 hours. 0 turns tries off.",
    )
    # The webhook's signing secret (Standard Webhooks, "whsec_..."), encrypted like the API key;
    # shown once when it is made (batches.webhooks).
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)[:100] or "workspace"
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return reverse("workspace_batches", args=[self.slug])

    # The key is write-only: set it, use it for a call, show its hint, never render it.
    @sensitive_variables("key")
    def set_api_key(self, key: str) -> None:
        key = key.strip()
        self.api_key_encrypted = crypto.encrypt(key)
        self.api_key_hint = crypto.mask(key)

    @property
    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)


class Membership(models.Model):
    """A person's place in a workspace: what they may do there (batches.roles)."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        SUBMITTER = "submitter", "Submitter"
        ADMIN = "admin", "Admin"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.SUBMITTER)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workspace", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_once"),
        ]

    def __str__(self):
        return f"{self.user} in {self.workspace} ({self.get_role_display()})"


class BatchQuerySet(StampedQuerySet):
    def visible_to(self, user):
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(workspace__members=user)

    def active(self):
        return self.filter(processing_status__in=Batch.ACTIVE)

    def running(self):
        """In progress or canceling, and still in the API: what the header counts."""
        return self.active().filter(gone_at=None)

    def with_problems(self):
        return self.filter(Q(errored__gt=0) | Q(expired__gt=0))

    def due_for_poll(self, now):
        return self.active().filter(gone_at__isnull=True, next_poll_at__lte=now)

    def needing_ingestion(self, now):
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

    def __str__(self):
        return self.name or self.api_id

    def get_absolute_url(self):
        return reverse("batch_detail", args=[self.workspace.slug, self.api_id])

    @property
    def display_name(self) -> str:
        return self.name or self.api_id

    @staticmethod
    def results_fetchable(now) -> Q:
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
    def results_available_until(self):
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


def _parse_time(value: str | None):
    return parse_datetime(value) if value else None


class Result(models.Model):
    """One line of a batch's results: what became of one request (`custom_id`)."""

    class Type(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        ERRORED = "errored", "Errored"
        CANCELED = "canceled", "Canceled"
        EXPIRED = "expired", "Expired"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="results")
    custom_id = models.CharField(max_length=64)
    result_type = models.CharField(max_length=20, choices=Type.choices)
    error_type = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    content = models.JSONField(null=True, blank=True, help_text="The message's content blocks.")
    # The text blocks joined: what the explorer shows and searches.
    answer_text = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "custom_id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "custom_id"], name="result_unique_custom_id"),
        ]
        indexes = [
            # The explorer's filters within one batch.
            models.Index(fields=["batch", "result_type", "custom_id"], name="result_by_type"),
            # "Which batch answered this custom_id?", across every batch.
            models.Index(fields=["custom_id"], name="result_by_custom_id"),
        ]

    def __str__(self):
        return f"{self.custom_id}: {self.result_type}"


class ResultText(models.Model):
    """What the results explorer's text search looks in: a result's custom_id, answer and error
    message, in one text with a trigram index (PostgreSQL). Written by batches.search once a
    batch's results are complete, apart from ingestion, so storing results stays at COPY's
    speed; until then (and on SQLite) the search reads the batch's results."""

    # The result's id, not a foreign key: a relation to Result would make Django load every
    # result into memory to delete a batch, where now each table goes in one DELETE.
    result_id = models.BigIntegerField(primary_key=True)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="+")
    haystack = models.TextField()

    def __str__(self):
        return f"search text of result {self.pk}"


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

    def __str__(self):
        return self.name


class BatchUsage(models.Model):
    """A batch's stored results counted by model, result type and error type, with their usage
    and cost: what the usage pages add up, so that they read a few rows per batch and never the
    results. Written with the batch's totals once its results are stored (batches.totals)."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="usage_rows")
    # The batch's own workspace, creation time and submitter, copied: the usage pages group
    # these rows alone, without joining the batches (a third of their time at a year of them).
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=100, blank=True)
    result_type = models.CharField(max_length=20, choices=Result.Type.choices)
    error_type = models.CharField(max_length=64, blank=True)
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_creation_input_tokens = models.BigIntegerField(default=0)
    cache_read_input_tokens = models.BigIntegerField(default=0)
    # USD at batch prices; None for a model the price table does not know.
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "model", "result_type", "error_type"], name="batch_usage_unique"
            ),
        ]
        indexes = [models.Index(fields=["workspace", "created_at"], name="usage_by_time")]

    def __str__(self):
        return f"{self.batch_id} {self.model} {self.result_type} {self.error_type}".strip()


class BudgetNotice(models.Model):
    """That a workspace's spending reached a share of its monthly budget: told once a month per
    threshold (email to its admins, the budget webhook event)."""

    THRESHOLDS = (80, 100)

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="The first day of the month.")
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(max_digits=14, decimal_places=6)
    budget = models.DecimalField(max_digits=12, decimal_places=2)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "month", "threshold"], name="budget_notice_once"
            ),
        ]

    def __str__(self):
        return f"{self.workspace_id} {self.month:%Y-%m} {self.threshold}%"


def upload_path(submission, filename):
    return f"uploads/{submission.workspace.slug}/{submission.key}/{filename}"


def part_body_path(part, filename):
    return upload_path(part.submission, filename)


class SubmissionQuerySet(StampedQuerySet):
    def checks_to_resume(self, now):
        """Checks that should be running but are not: their worker died (the claim lapsed) or
        their task never started (asked for over a minute ago, never claimed)."""
        return self.filter(state=Submission.State.CHECKING).filter(
            Q(check_claimed_until__lt=now)
            | Q(check_claimed_until__isnull=True, check_requested_at__lt=now - timedelta(minutes=1))
        )


class Submission(models.Model):
    """One uploaded file: checked in the background, priced, then submitted as one or more
    batches, once."""

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSONL"
        CSV = "csv", "CSV"

    class State(models.TextChoices):
        # The dashboard's own states; the API's live on Batch.processing_status.
        NEEDS_TEMPLATE = "needs_template", "Needs a prompt template"
        CHECKING = "checking", "Checking"
        STOPPED = "stopped", "Check stopped"
        HAS_PROBLEMS = "has_problems", "Has problems"
        READY = "ready", "Ready to submit"
        SUBMITTING = "submitting", "Submitting"
        SUBMITTED = "submitted", "Submitted"
        FAILED = "failed", "Submit failed"

    # The states in which the options may change and the file be checked again.
    EDITABLE = (State.NEEDS_TEMPLATE, State.STOPPED, State.HAS_PROBLEMS, State.READY)
    # A check stops for good after this many workers died running it.
    MAX_CHECK_ATTEMPTS = 3

    class Oversize(models.TextChoices):
        SPLIT = "split", "Split into several batches"
        REFUSE = "refuse", "Refuse the file"

    # The idempotency key: one submission, however often its submit button is pressed.
    key = models.UUIDField(unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="submissions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    name = models.CharField(max_length=200, blank=True)
    source_filename = models.CharField(max_length=255)
    source_format = models.CharField(max_length=10, choices=Format.choices)
    upload = models.FileField(upload_to=upload_path, max_length=400)
    upload_size = models.BigIntegerField(default=0)
    oversize = models.CharField(max_length=10, choices=Oversize.choices, default=Oversize.SPLIT)
    # For CSV: template, id_column, model, max_tokens, system, temperature.
    csv_options = models.JSONField(default=dict, blank=True)
    resubmission_of = models.ForeignKey(
        "Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="resubmissions"
    )

    state = models.CharField(max_length=20, choices=State.choices, default=State.NEEDS_TEMPLATE)

    # The check, while it runs: asked for, claimed by a worker (a lease it renews as it goes),
    # how far it got, and whether the person asked it to stop.
    check_requested_at = models.DateTimeField(null=True, blank=True)
    check_started_at = models.DateTimeField(null=True, blank=True)
    check_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    check_attempts = models.PositiveIntegerField(default=0)
    check_stop_requested = models.BooleanField(default=False)
    check_lines = models.BigIntegerField(default=0)
    check_bytes = models.BigIntegerField(default=0, help_text="Bytes of the upload read so far.")
    check_requests = models.PositiveIntegerField(default=0)
    check_problems = models.PositiveIntegerField(default=0)

    # What the check found.
    request_count = models.PositiveIntegerField(default=0)
    request_bytes = models.BigIntegerField(default=0)
    problem_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(
        default=0, help_text="Lines or rows left out for their problems."
    )
    # False when a cap, a damaged file or a stop ended the check before the end of the file.
    check_complete = models.BooleanField(default=True)
    # The first problems (line, field, message, fix); the full report is a download.
    problems = models.JSONField(default=list, blank=True)
    report_file = models.FileField(upload_to=upload_path, max_length=400, blank=True)
    models_used = models.JSONField(default=dict, blank=True, help_text="model id: request count")
    estimate = models.JSONField(default=dict, blank=True)
    # The first requests, a few KB of each at most (the whole one is a link away).
    preview = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=list, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    # When the index of where each request sits was written (just after the report).
    requests_indexed_at = models.DateTimeField(null=True, blank=True)

    # The name and labels its batches get (the name is `name` above).
    labels = models.JSONField(default=list, blank=True)
    # Beta features named in its create calls (the anthropic-beta header; dashboard.betas).
    betas = models.JSONField(default=list, blank=True)
    # The first requests' most expensive outcome at the standard price, for "Try first" to state
    # before sending: [{"custom_id", "line", "model", "max_tokens", "cost_at_most"}], up to 10.
    first_requests = models.JSONField(default=list, blank=True, editable=False)
    # Spending: the upload's own limit (Submit refuses when the estimate is above it), and the
    # workspace admin who let it go over the workspace's budget.
    spend_cap = models.DecimalField(
        "Spend cap (USD)",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    over_budget_confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    # Submitting.
    submit_valid_only = models.BooleanField(
        default=False, help_text="Submitted without the lines that have problems, by choice."
    )
    submit_requested_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    submit_error = models.TextField(blank=True)

    objects = SubmissionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The beat's query for checks to pick up again: Submission.objects.checks_to_resume().
            models.Index(
                fields=["check_claimed_until"],
                name="submission_checking",
                condition=Q(state="checking"),
            ),
        ]

    def __str__(self):
        return self.name or self.source_filename

    def get_absolute_url(self):
        return reverse("submission_detail", args=[self.workspace.slug, self.key])

    @property
    def display_name(self):
        return self.name or self.source_filename

    @property
    def is_csv(self) -> bool:
        return self.source_format == self.Format.CSV

    @property
    def is_editable(self) -> bool:
        return self.state in self.EDITABLE

    @property
    def is_checking(self) -> bool:
        return self.state == self.State.CHECKING

    @property
    def still_changing(self) -> bool:
        """Worth polling: a check or a submit is under way, or the check's report is out and the
        index of its requests (which its downloads need) is still being written."""
        if self.state in (self.State.CHECKING, self.State.SUBMITTING):
            return True
        return self.is_checked and self.request_count > 0 and self.requests_indexed_at is None

    @property
    def is_checked(self) -> bool:
        return self.state in (
            self.State.HAS_PROBLEMS,
            self.State.READY,
            self.State.SUBMITTING,
            self.State.SUBMITTED,
            self.State.FAILED,
        )

    @property
    def can_submit_valid_part(self) -> bool:
        """Has problems, but the check read the whole file and some requests are valid: these
        may be sent without the rest, when the person says so."""
        return (
            self.state == self.State.HAS_PROBLEMS and self.check_complete and self.request_count > 0
        )

    @property
    def can_submit(self) -> bool:
        return self.state in (self.State.READY, self.State.FAILED) or self.can_submit_valid_part

    def check_progress(self, now=None) -> dict:
        """How far the check is: share of the upload read, lines, the rate and the time left."""
        from django.utils import timezone

        now = now or timezone.now()
        elapsed = (now - self.check_started_at).total_seconds() if self.check_started_at else 0
        total = max(self.upload_size, 1)
        done = min(self.check_bytes, total)
        rate = done / elapsed if elapsed > 0.5 and done else None
        return {
            "percent": round(100 * done / total, 1),
            "bytes": done,
            "total": self.upload_size,
            "lines": self.check_lines,
            "requests": self.check_requests,
            "problems": self.check_problems,
            "rate": rate,
            "seconds_left": (total - done) / rate if rate else None,
            "started": self.check_started_at is not None,
        }


class SubmissionPart(models.Model):
    """One batch-sized slice of a submission: the create body its check wrote, and the batch it
    became."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField()
    request_count = models.PositiveIntegerField()
    request_bytes = models.BigIntegerField(help_text="The size of the create body.")
    body = models.FileField(upload_to=part_body_path, max_length=400, blank=True)
    batch = models.OneToOneField(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="submission_part"
    )
    # A create call that was sent; if its answer is lost the next attempt first looks for the
    # batch among the workspace's newest ones instead of creating a second.
    create_started_at = models.DateTimeField(null=True, blank=True)
    create_attempts = models.PositiveIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = StampedQuerySet.as_manager()

    class Meta:
        ordering = ["submission", "index"]
        constraints = [
            models.UniqueConstraint(fields=["submission", "index"], name="part_unique_index"),
        ]

    def __str__(self):
        return f"{self.submission} part {self.index + 1}"


class BatchRequest(models.Model):
    """Where a submitted request is: its batch's create body (`part`), and its bytes there.

    The request itself is not copied into the database: it is read from the body when a page
    shows it beside its result, or when it is resubmitted.
    """

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="requests")
    part = models.PositiveIntegerField(default=0)
    custom_id = models.CharField(max_length=64)
    # The file's line (JSONL) or row (CSV) number, so a CSV can be given back in its own order.
    line = models.PositiveIntegerField()
    offset = models.PositiveBigIntegerField(default=0)
    length = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["submission", "line"]
        constraints = [
            models.UniqueConstraint(
                fields=["submission", "custom_id"], name="request_unique_custom_id"
            ),
        ]
        indexes = [models.Index(fields=["submission", "part", "line"], name="request_by_part")]

    def __str__(self):
        return self.custom_id

    def read(self) -> bytes:
        """The request's JSON, exactly as it was sent, from its batch's create body."""
        from dashboard.storage import read_range

        body = SubmissionPart.objects.get(submission_id=self.submission_id, index=self.part).body
        if not body.name:
            raise FileNotFoundError(f"The create body of part {self.part} is not stored.")
        return read_range(body.name, self.offset, self.length, storage=body.storage)

    def load(self) -> dict:
        import orjson

        return orjson.loads(self.read())


class Trial(models.Model):
    """One request of a checked upload sent on its own through the Messages API before its batch
    ("Try first"): what it could cost, stated before sending, then the API's answer or error and
    what it cost, both at the standard price (no batch discount)."""

    class State(models.TextChoices):
        SENDING = "sending", "Sending"
        ANSWERED = "answered", "Answered"
        FAILED = "failed", "Failed"

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="trials")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="trials")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    custom_id = models.CharField(max_length=64)
    line = models.PositiveIntegerField()
    model = models.CharField(max_length=100, blank=True)
    max_tokens = models.PositiveIntegerField(default=0)
    # The most expensive outcome (its input estimate, then max_tokens of output), before sending.
    cost_at_most = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.SENDING)
    # When the request went to the API: set once, before sending, so a task run again after its
    # worker died never sends (and bills) it twice.
    sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    # The answer, as checked for a result (batches.ingestion.result_fields).
    content = models.JSONField(null=True, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    answer_model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    # The API's error, as it gave it.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_type = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    request_id = models.CharField(max_length=100, blank=True)

    objects = StampedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "line"]
        indexes = [
            # How many tries a workspace made in the last 24 hours (its daily cap).
            models.Index(fields=["workspace", "created_at"], name="trial_recent"),
        ]

    def __str__(self):
        return f"try of {self.custom_id}"

    @property
    def is_lost(self) -> bool:
        """Still sending after its task would have been stopped (retries and waits included):
        the worker sending it died."""
        limit = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
        return self.state == self.State.SENDING and self.created_at < timezone.now() - limit


class UserPreference(models.Model):
    """One person's dashboard choices."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboard_preference"
    )
    # Besides the toast, a browser notification when one of the user's batches ends.
    browser_notifications = models.BooleanField(default=False)

    def __str__(self):
        return f"Preferences of {self.user}"

    @classmethod
    def for_user(cls, user) -> "UserPreference":
        if not user.is_authenticated:
            return cls()
        preference, _ = cls.objects.get_or_create(user=user)
        return preference


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

    def __str__(self):
        return f"{self.event} {self.message_id}"

    @property
    def outcome(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.next_attempt_at:
            return "retrying" if self.attempts else "pending"
        return "failed"


class AuditEntryQuerySet(models.QuerySet):
    """Append-only: rows are added, never changed or removed through the ORM (and on
    PostgreSQL a trigger refuses UPDATE and DELETE too; see migration 0010). Every row added is
    chained to the one before it (batches.audit_chain), whichever way it is added."""

    def bulk_create(
        self,
        objs,
        batch_size=None,
        ignore_conflicts=False,
        update_conflicts=False,
        update_fields=None,
        unique_fields=None,
    ):
        if ignore_conflicts or update_conflicts or update_fields or unique_fields:
            raise AuditEntry.Immutable("Audit entries are only ever added, never upserted.")
        from django.db import transaction

        from batches import audit_chain

        objs = list(objs)
        if not objs:
            return objs
        self._for_write = True
        with transaction.atomic(using=self.db, savepoint=False):
            audit_chain.chain(objs, self.db)
            return super().bulk_create(objs, batch_size=batch_size)

    def update(self, **kwargs):
        raise AuditEntry.Immutable("Audit entries cannot be changed.")

    def delete(self):
        raise AuditEntry.Immutable("Audit entries cannot be deleted.")


class AuditEntry(models.Model):
    """One change a person or the system made: who, when, from where, to what, and the before
    and after of changed settings (never a key). Written by batches.audit.

    The person and the workspace are kept by id and by name, without foreign keys: deleting a
    user or a workspace must not change (or take with it) the record of what they did.

    Each entry holds the hash of the one before it (by id) and its own hash over its content and
    that one, given as it is added (batches.audit_chain; `manage.py verifyaudit` checks them)."""

    class Immutable(Exception):
        pass

    class Action(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOGOUT = "logout", "Logged out"
        PASSWORD_SET = "password_set", "Set a password"
        UPLOAD = "upload", "Uploaded a file"
        SUBMIT = "submit", "Submitted"
        STOP_CHECK = "stop_check", "Stopped a check"
        CANCEL = "cancel", "Canceled a batch"
        DELETE = "delete", "Deleted a batch"
        RESUBMIT = "resubmit", "Resubmitted"
        REFRESH = "refresh", "Refreshed a batch"
        DOWNLOAD = "download", "Downloaded results"
        MEMBER_ADD = "member_add", "Added a member"
        MEMBER_INVITE = "member_invite", "Invited a member"
        MEMBER_ROLE = "member_role", "Changed a role"
        MEMBER_REMOVE = "member_remove", "Removed a member"
        KEY_CHANGE = "key_change", "Replaced the API key"
        SECRET_CHANGE = "secret_change", "Made a new webhook secret"
        WEBHOOK_REPLAY = "webhook_replay", "Replayed a webhook"
        SETTINGS_CHANGE = "settings_change", "Changed settings"
        WORKSPACE_CREATE = "workspace_create", "Created the workspace"
        WORKSPACE_DELETE = "workspace_delete", "Deleted the workspace"
        BATCH_ENDED = "batch_ended", "Batch ended"
        BATCH_GONE = "batch_gone", "Batch found deleted in the API"
        RENAME = "rename", "Renamed or labeled a batch"
        TRY = "try", "Tried requests through the Messages API"

    # Set as the entry is chained, under the chain's lock: later ids are never earlier.
    at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    # None: the system (a worker, the sync, a command run without a person).
    actor_id = models.IntegerField(null=True, blank=True, db_index=True)
    actor_name = models.CharField(max_length=150, blank=True)
    # None: not about one workspace (a login, say).
    workspace_id = models.IntegerField(null=True, blank=True, db_index=True)
    workspace_name = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    # What the change was made to: "batch msgbatch_…", "member ada", "upload 3f2…".
    target = models.CharField(max_length=300, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    # SHA-256, hex: the previous entry's hash (the first entry's: 64 zeros), and this entry's.
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["workspace_id", "-at"], name="audit_workspace_newest")]
        constraints = [
            # Two entries never follow the same one: should two appends ever race past the
            # chain's lock, the second fails instead of forking the chain.
            models.UniqueConstraint(fields=["prev_hash"], name="audit_chain_no_fork"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'}: {self.action}"

    def save(self, *args, using=None, **kwargs):
        """Adds the entry, chained (its id and time are given then); never changes one."""
        if not self._state.adding:
            raise self.Immutable("Audit entries cannot be changed.")
        type(self).objects.db_manager(using).bulk_create([self])

    def delete(self, *args, **kwargs):
        raise self.Immutable("Audit entries cannot be deleted.")

    @property
    def actor_label(self) -> str:
        return self.actor_name or "System"
