"""A batch's results, one row per request, and the text the results explorer searches."""

from django.db import models

from batches.models.batches import Batch


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

    def __str__(self) -> str:
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

    def __str__(self) -> str:
        return f"search text of result {self.pk}"
