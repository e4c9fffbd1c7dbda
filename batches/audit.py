"""The audit log: who changed what, when, from which address (batches.models.AuditEntry).

Every change a person makes through the pages, the shell doors or the admin is recorded here by
the code that makes it, as is what the system finds (a batch ended, a batch deleted elsewhere).
Entries are only ever added. Settings are recorded with their values before and after; a key
never is, only that it changed and its masked hint.
"""

import hashlib
import ipaddress
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from batches.models import AuditEntry, Batch, Submission, Workspace

Action = AuditEntry.Action


def client_address(request: HttpRequest | None) -> str | None:
    """The address the request came from, as the login throttling sees it (REMOTE_ADDR)."""
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _actor(request: HttpRequest | None, actor: AbstractBaseUser | None) -> AbstractBaseUser | None:
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            actor = user
    return actor


def entry(
    action: str,
    *,
    request: HttpRequest | None = None,
    actor: AbstractBaseUser | None = None,
    workspace: Workspace | None = None,
    target: str = "",
    before: dict | None = None,
    after: dict | None = None,
    actor_name: str = "",
) -> AuditEntry:
    """An unsaved entry (for bulk_create); `record` saves one."""
    actor = _actor(request, actor)
    return AuditEntry(
        action=action,
        actor_id=actor.pk if actor is not None else None,
        actor_name=(actor.get_username() if actor is not None else actor_name)[:150],
        workspace_id=workspace.pk if workspace is not None else None,
        workspace_name=workspace.name if workspace is not None else "",
        target=target[:300],
        address=client_address(request),
        before=before or {},
        after=after or {},
    )


def record(action: str, **details: Any) -> AuditEntry:
    made = entry(action, **details)
    made.save()
    return made


def batch_target(batch: Batch) -> str:
    return f"batch {batch.api_id}" + (f" ({batch.name})" if batch.name else "")


def upload_target(submission: Submission) -> str:
    return f"upload {submission.display_name}"


def record_batches(action: str, workspace: Workspace, batches: Iterable[Batch]) -> None:
    """What the system found about these batches (ended, deleted elsewhere), one entry each."""
    AuditEntry.objects.bulk_create(
        entry(action, workspace=workspace, target=batch_target(batch)) for batch in batches
    )


def masked_url(url: str) -> str:
    """A webhook URL as the audit log keeps it: its scheme and host only (the path of many
    webhook URLs is itself a secret token)."""
    from urllib.parse import urlsplit

    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "…"


def workspace_settings(workspace: Workspace, names: Iterable[str]) -> dict:
    """A workspace's settings as the audit log records them: the webhook URL masked (see
    masked_url), with a short fingerprint of the whole URL, so a change of its path alone still
    counts as a change."""
    values = {name: getattr(workspace, name) for name in names}
    if values.get("monthly_budget") is not None:  # JSON has no decimals: the amount as written
        values["monthly_budget"] = str(values["monthly_budget"])
    if "notify_webhook_url" in values:
        url = values["notify_webhook_url"]
        values["notify_webhook_url"] = masked_url(url)
        values["webhook_url_fingerprint"] = (
            hashlib.sha256(url.encode()).hexdigest()[:12] if url else ""
        )
    return values


def changed_settings(before: dict, after: dict) -> tuple[dict, dict]:
    """Only the settings that changed, before and after."""
    names = [name for name in after if before.get(name) != after[name]]
    return {name: before.get(name) for name in names}, {name: after[name] for name in names}


@receiver(user_logged_in, dispatch_uid="audit-login")
def _logged_in(
    sender: object, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: object
) -> None:
    record(Action.LOGIN, request=request, actor=user)


@receiver(user_logged_out, dispatch_uid="audit-logout")
def _logged_out(
    sender: object, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: object
) -> None:
    if user is not None:
        record(Action.LOGOUT, request=request, actor=user)


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def _login_failed(
    sender: object,
    credentials: dict[str, Any],
    request: HttpRequest | None = None,
    **kwargs: object,
) -> None:
    # The username tried, as typed (bounded); never the password.
    tried = str(credentials.get("username", ""))[:150]
    record(Action.LOGIN_FAILED, request=request, actor_name=tried, target=f"username {tried}")
