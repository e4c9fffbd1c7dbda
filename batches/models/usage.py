"""What the usage pages and the budgets read: each batch's usage rows (per model, result
type and error type) and the budget notices already sent."""

from django.conf import settings
from django.db import models

from batches.models.batches import Batch
from batches.models.results import Result
from batches.models.workspaces import Workspace


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

    def __str__(self) -> str:
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

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.month:%Y-%m} {self.threshold}%"
