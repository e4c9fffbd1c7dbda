"""The audit log's entries: append-only, each chained to the one before it by its hash
(batches.audit_chain). Written by batches.audit."""

from collections.abc import Collection, Iterable
from typing import Any, NoReturn

from django.db import models
from django.utils import timezone


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    """Append-only: rows are added, never changed or removed through the ORM (and on
    PostgreSQL a trigger refuses UPDATE and DELETE too; see migration 0010). Every row added is
    chained to the one before it (batches.audit_chain), whichever way it is added."""

    # The ignores: inside a QuerySet subclass the django-stubs plugin (6.1.2, mypy 2.4) leaves
    # the base methods' model type unbound (`list[_Model]`), so no model type can match it.
    def bulk_create(  # type: ignore[override]
        self,
        objs: Iterable["AuditEntry"],
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Collection[str] | None = None,
        unique_fields: Collection[str] | None = None,
    ) -> list["AuditEntry"]:
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
            return super().bulk_create(objs, batch_size=batch_size)  # type: ignore[arg-type, return-value]

    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditEntry.Immutable("Audit entries cannot be changed.")

    def delete(self) -> NoReturn:
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

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'}: {self.action}"

    def save(self, *args: Any, using: str | None = None, **kwargs: Any) -> None:
        """Adds the entry, chained (its id and time are given then); never changes one."""
        if not self._state.adding:
            raise self.Immutable("Audit entries cannot be changed.")
        type(self).objects.db_manager(using).bulk_create([self])

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise self.Immutable("Audit entries cannot be deleted.")

    @property
    def actor_label(self) -> str:
        return self.actor_name or "System"
