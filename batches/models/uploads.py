"""Uploads: a file as submitted (Submission), checked and cut into batch-sized parts with
their create bodies (SubmissionPart), where each of its requests lies in those bodies
(BatchRequest), and its requests tried one by one before the batch (Trial)."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Self

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from batches.changes import StampedQuerySet
from batches.models.batches import Batch
from batches.models.workspaces import Workspace


def upload_path(submission: "Submission", filename: str) -> str:
    return f"uploads/{submission.workspace.slug}/{submission.key}/{filename}"


def part_body_path(part: "SubmissionPart", filename: str) -> str:
    return upload_path(part.submission, filename)


class SubmissionQuerySet(StampedQuerySet):
    def checks_to_resume(self, now: datetime) -> Self:
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
    # Beta features named in its create calls (the anthropic-beta header; foundations.betas).
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

    def __str__(self) -> str:
        return self.name or self.source_filename

    def get_absolute_url(self) -> str:
        return reverse("submission_detail", args=[self.workspace.slug, self.key])

    @property
    def display_name(self) -> str:
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

    def check_progress(self, now: datetime | None = None) -> dict[str, Any]:
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

    def __str__(self) -> str:
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

    def __str__(self) -> str:
        return self.custom_id

    def read(self) -> bytes:
        """The request's JSON, exactly as it was sent, from its batch's create body."""
        from foundations.storage import read_range

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

    def __str__(self) -> str:
        return f"try of {self.custom_id}"

    @property
    def is_lost(self) -> bool:
        """Still sending after its task would have been stopped (retries and waits included):
        the worker sending it died."""
        limit = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
        return self.state == self.State.SENDING and self.created_at < timezone.now() - limit
