"""Changes to a workspace itself: create it, its connection (the API key, the base URL), its
settings (notices, downloads, budget, tries a day), its webhook's signing secret and replays,
and deleting it. Settings are recorded with their before and after; a key only as its mask."""

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from batches import audit, tasks, webhooks, workspaces
from batches.models import AuditEntry, WebhookDelivery, Workspace
from batches.operations import Refused, require
from batches.roles import Ability

Action = AuditEntry.Action
# What the settings page and the Django admin may change besides the connection, as audited.
OPTION_FIELDS = [
    "notify_email",
    "notify_webhook_url",
    "results_downloadable",
    "monthly_budget",
    "daily_tries",
]
ADMIN_FIELDS = ["name", "slug", "base_url", "notify_email", "notify_webhook_url",
                "results_downloadable"]  # fmt: skip


@sensitive_variables("api_key")
def create(name: str, base_url: str, api_key: str, actor: AbstractBaseUser | None, *,
           members: Iterable[User | tuple[User, str]] = (), where: str,
           request: HttpRequest | None = None) -> Workspace:  # fmt: skip
    """A workspace with its key and members; `where` says from which door (the audit target)."""
    with transaction.atomic():
        workspace = workspaces.create_workspace(name, base_url, api_key, members=members)
        memberships = workspace.memberships.select_related("user")
        audit.record(
            Action.WORKSPACE_CREATE,
            request=request,
            actor=actor,
            workspace=workspace,
            target=where,
            after={
                "base_url": workspace.base_url,
                "members": {item.user.get_username(): item.role for item in memberships},
            },
        )
    return workspace


@sensitive_variables("api_key")
def change_connection(workspace: Workspace, actor: AbstractBaseUser | None, base_url: str,
                      api_key: str, *, request: HttpRequest | None = None) -> None:  # fmt: skip
    """A new base URL, a new key, or both (a new URL always comes with the key again: the stored
    key never goes to a host it was not given for). The caller tried the pair against the API."""
    require(actor, workspace, Ability.MANAGE)
    if base_url != workspace.base_url and not api_key:
        raise Refused("Enter the key again when the API base URL changes.")
    old_url, old_hint = workspace.base_url, workspace.api_key_hint
    with transaction.atomic():
        workspace.base_url = base_url
        if api_key:
            workspace.set_api_key(api_key)
            audit.record(Action.KEY_CHANGE, request=request, actor=actor, workspace=workspace,
                         target="API key", before={"api_key": old_hint},
                         after={"api_key": workspace.api_key_hint})  # fmt: skip
        if workspace.base_url != old_url:
            audit.record(Action.SETTINGS_CHANGE, request=request, actor=actor,
                         workspace=workspace, target="API base URL",
                         before={"base_url": old_url},
                         after={"base_url": workspace.base_url})  # fmt: skip
        workspace.save(update_fields=["base_url", "api_key_encrypted", "api_key_hint"])


def change_options(
    workspace: Workspace,
    actor: AbstractBaseUser | None,
    values: dict[str, Any],
    *,
    request: HttpRequest | None = None,
) -> tuple[bool, str]:
    """New settings (some of OPTION_FIELDS): (whether any changed, the webhook's new signing
    secret to show once when the webhook's address changed, else "")."""
    require(actor, workspace, Ability.MANAGE)
    new_secret = ""
    with transaction.atomic():
        stored = Workspace.objects.select_for_update().get(pk=workspace.pk)
        before = audit.workspace_settings(stored, OPTION_FIELDS)
        for name, value in values.items():
            setattr(workspace, name, value)
        # Only these columns: a sync or a key change saved meanwhile is not written over.
        workspace.save(update_fields=OPTION_FIELDS)
        after = audit.workspace_settings(workspace, OPTION_FIELDS)
        changed_before, changed_after = audit.changed_settings(before, after)
        if changed_after:
            audit.record(Action.SETTINGS_CHANGE, request=request, actor=actor,
                         workspace=workspace, target="notices, downloads and budget",
                         before=changed_before, after=changed_after)  # fmt: skip
        if "webhook_url_fingerprint" in changed_after:
            webhooks.drop_pending(workspace)
            if workspace.notify_webhook_url:  # a new receiver gets a new secret
                new_secret = _new_secret(workspace, actor, request)
    return bool(changed_after), new_secret


def _new_secret(
    workspace: Workspace, actor: AbstractBaseUser | None, request: HttpRequest | None
) -> str:
    secret = webhooks.set_new_secret(workspace)
    audit.record(Action.SECRET_CHANGE, request=request, actor=actor, workspace=workspace,
                 target="webhook signing secret")  # fmt: skip
    return secret


def new_webhook_secret(
    workspace: Workspace, actor: AbstractBaseUser | None, *, request: HttpRequest | None = None
) -> str:
    """A new signing secret for the webhook, to show once (the old one stops signing)."""
    require(actor, workspace, Ability.MANAGE)
    if not workspace.notify_webhook_url:
        raise Refused("Set a webhook URL first.")
    with transaction.atomic():
        return _new_secret(workspace, actor, request)


def replay_webhook(
    delivery: WebhookDelivery, actor: AbstractBaseUser | None, *, request: HttpRequest | None = None
) -> None:
    """Send a delivery again (never to an address the webhook has left)."""
    workspace = delivery.workspace
    require(actor, workspace, Ability.MANAGE)
    with transaction.atomic():
        if not webhooks.replay(delivery):
            raise Refused("This was sent to an earlier webhook URL: it is not sent again.")
        audit.record(Action.WEBHOOK_REPLAY, request=request, actor=actor, workspace=workspace,
                     target=f"webhook {delivery.message_id}",
                     after={"event": delivery.event})  # fmt: skip
        tasks.deliver_webhook.delay_on_commit(delivery.pk)


def save_from_admin(workspace: Workspace, actor: AbstractBaseUser | None, *, created: bool,
                    key_changed: bool, save: Callable[[], None],
                    request: HttpRequest | None = None) -> None:  # fmt: skip
    """The Django admin's save of a workspace (`save` writes the form's object), audited as the
    settings pages' changes are."""
    if not created:
        require(actor, workspace, Ability.MANAGE)
    stored = None if created else Workspace.objects.filter(pk=workspace.pk).first()
    before = audit.workspace_settings(stored, ADMIN_FIELDS) if stored else {}
    hint = stored.api_key_hint if stored else ""
    with transaction.atomic():
        save()
        after = audit.workspace_settings(workspace, ADMIN_FIELDS)
        if created:
            audit.record(Action.WORKSPACE_CREATE, request=request, actor=actor,
                         workspace=workspace, target="admin", after=after)  # fmt: skip
            return
        changed_before, changed_after = audit.changed_settings(before, after)
        if changed_after:
            audit.record(Action.SETTINGS_CHANGE, request=request, actor=actor,
                         workspace=workspace, target="admin", before=changed_before,
                         after=changed_after)  # fmt: skip
        if key_changed:
            audit.record(Action.KEY_CHANGE, request=request, actor=actor, workspace=workspace,
                         target="API key", before={"api_key": hint},
                         after={"api_key": workspace.api_key_hint})  # fmt: skip


def delete(
    workspace: Workspace,
    actor: AbstractBaseUser | None,
    *,
    where: str,
    request: HttpRequest | None = None,
) -> None:
    require(actor, workspace, Ability.MANAGE)
    with transaction.atomic():
        audit.record(Action.WORKSPACE_DELETE, request=request, actor=actor, workspace=workspace,
                     target=where)  # fmt: skip
        workspace.delete()
