"""Workspaces, the people in them and what each may do there, and each person's own
dashboard choices."""

from decimal import Decimal
from typing import Any, Self

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.debug import sensitive_variables

from batches import crypto
from batches.changes import StampedQuerySet
from batches.outbound import validate_outbound_url


class WorkspaceQuerySet(StampedQuerySet):
    def visible_to(self, user: User | AnonymousUser) -> Self:
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

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            self.slug = slugify(self.name)[:100] or "workspace"
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
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

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.get_role_display()})"


class UserPreference(models.Model):
    """One person's dashboard choices."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboard_preference"
    )
    # Besides the toast, a browser notification when one of the user's batches ends.
    browser_notifications = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"Preferences of {self.user}"

    @classmethod
    def for_user(cls, user: User | AnonymousUser) -> "UserPreference":
        if not user.is_authenticated:
            return cls()
        preference, _ = cls.objects.get_or_create(user=user)
        return preference
