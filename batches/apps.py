from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django.apps import AppConfig
from django.conf import settings

from foundations.env import env_str

if TYPE_CHECKING:  # the models load once the app is ready, not with this module
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.db import models

    from batches.models import Membership, Workspace


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batches"

    def first_run(self, say: Callable[[str], None]) -> None:
        """Called by `make run` after migrating: the Sandbox, and the real API when a key is set."""
        from batches.workspaces import ensure_real_api_workspace, ensure_sandbox

        if settings.EMULATOR_ENABLED:
            sandbox = ensure_sandbox()
            say(f"supervisor | Workspace {sandbox.name!r} uses the built-in emulator.")
        real = ensure_real_api_workspace(env_str("ANTHROPIC_API_KEY", ""))
        if real:
            say(
                f"supervisor | Workspace {real.name!r} created with the key from ANTHROPIC_API_KEY."
            )

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete

        # audit: its signal receivers; audit_verify: its deploy check.
        from batches import audit, audit_verify, changes  # noqa: F401
        from batches.models import (
            Batch,
            BatchLabel,
            Membership,
            Submission,
            SubmissionPart,
            Trial,
            Workspace,
        )

        # Every saved or deleted row a page shows moves its workspace's change stamp.
        changes.register(Workspace, "pk")
        changes.register(Batch, "workspace_id")
        changes.register(BatchLabel, "batch__workspace_id")
        changes.register(Submission, "workspace_id")
        changes.register(SubmissionPart, "submission__workspace_id")
        changes.register(Trial, "workspace_id")
        for model in (Workspace, Batch, BatchLabel, Submission, SubmissionPart, Trial):
            post_save.connect(changes.stamp_saved, sender=model, dispatch_uid=f"stamp-{model}")
            post_delete.connect(changes.stamp_saved, sender=model, dispatch_uid=f"unstamp-{model}")
        m2m_changed.connect(
            _membership_changed, sender=Workspace.members.through, dispatch_uid="members"
        )
        # Memberships made or removed one by one (the settings pages), not through members.add().
        post_save.connect(_membership_saved, sender=Membership, dispatch_uid="membership-saved")
        post_delete.connect(_membership_saved, sender=Membership, dispatch_uid="membership-gone")
        pre_delete.connect(_workspace_deleted, sender=Workspace, dispatch_uid="workspace-gone")
        post_save.connect(_workspace_saved, sender=Workspace, dispatch_uid="workspace-saved")


def _members(workspace: "Workspace") -> list[int]:
    """The people who see the workspace: its members, and the site's superusers (who see every
    workspace)."""
    from django.contrib.auth import get_user_model

    superusers = get_user_model().objects.filter(is_superuser=True).values_list("pk", flat=True)
    members = workspace.members.values_list("pk", flat=True) if workspace.pk else []
    return sorted({*superusers, *members})


def _membership_changed(
    sender: "type[models.Model]",
    instance: "Workspace | AbstractBaseUser",
    action: str,
    reverse: bool,
    pk_set: set[int] | None,
    **kwargs: Any,
) -> None:
    """Who sees which workspace is cached (see batches.changes): forget it for whoever a
    membership change touches."""
    from batches import changes

    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if reverse:  # user.workspaces changed: only that user's view
        changes.forget_visibility([instance.pk])
    elif action == "pre_clear":  # workspace.members changed: the instance is the workspace
        changes.forget_visibility(_members(cast("Workspace", instance)))
    else:
        changes.forget_visibility(pk_set or ())
    changes.bump([instance.pk] if not reverse else (pk_set or ()))


def _membership_saved(sender: "type[Membership]", instance: "Membership", **kwargs: Any) -> None:
    from batches import changes

    changes.forget_visibility([instance.user_id])
    changes.bump([instance.workspace_id])


def _workspace_deleted(sender: "type[Workspace]", instance: "Workspace", **kwargs: Any) -> None:
    from batches import changes

    changes.forget_visibility(_members(instance))


def _workspace_saved(
    sender: "type[Workspace]", instance: "Workspace", created: bool, **kwargs: Any
) -> None:
    from batches import changes

    # A new workspace (superusers see it at once), or a renamed slug: the {slug: id} maps of
    # the people who see it are out of date.
    changes.forget_visibility(_members(instance))
