"""Creating workspaces, including the Sandbox that a fresh install starts with."""

import logging
import secrets
from collections.abc import Iterable
from typing import cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from batches import changes
from batches.models import Membership, Workspace

Role = Membership.Role

logger = logging.getLogger(__name__)

SANDBOX_NAME = "Sandbox"
REAL_API_NAME = "Anthropic API"


def sandbox_base_url() -> str:
    return f"{settings.SITE_URL}/emulator"


@sensitive_variables("api_key")
@transaction.atomic
def create_workspace(
    name: str,
    base_url: str,
    api_key: str,
    *,
    members: Iterable[AbstractBaseUser | tuple[AbstractBaseUser, str]] = (),
    sandbox: bool = False,
    role: str = Role.SUBMITTER,
) -> Workspace:
    """A workspace with its key; `members` are users (given `role`) or (user, role) pairs."""
    workspace = Workspace(name=name, base_url=base_url.rstrip("/"), is_sandbox=sandbox)
    workspace.set_api_key(api_key)
    workspace.save()
    Membership.objects.bulk_create(
        # A login is a row of the user model (AUTH_USER_MODEL), which the field's type names.
        Membership(workspace=workspace, user=cast(User, user), role=given)
        for user, given in (
            member if isinstance(member, tuple) else (member, role) for member in members
        )
    )
    changes.forget_visibility([member.pk for member in workspace.members.all()])
    return workspace


def ensure_sandbox() -> Workspace:
    """The Sandbox workspace on the built-in emulator, its URL following SITE_URL."""
    staff = list(get_user_model().objects.filter(is_superuser=True))
    workspace = Workspace.objects.filter(is_sandbox=True).first()
    if workspace is None:  # (its key is the Sandbox's own, hidden in reports by crypto)
        # The emulator treats every key as its own workspace: a random one keeps installs apart.
        key = f"sk-ant-sandbox-{secrets.token_urlsafe(24)}"
        return create_workspace(
            SANDBOX_NAME, sandbox_base_url(), key, members=staff, sandbox=True, role=Role.ADMIN
        )
    if workspace.base_url != sandbox_base_url():
        workspace.base_url = sandbox_base_url()
        workspace.save(update_fields=["base_url"])
    return workspace


@sensitive_variables("api_key")
def ensure_real_api_workspace(api_key: str) -> Workspace | None:
    if not api_key or Workspace.objects.filter(base_url=settings.ANTHROPIC_BASE_URL).exists():
        return None
    staff = list(get_user_model().objects.filter(is_superuser=True))
    return create_workspace(
        REAL_API_NAME, settings.ANTHROPIC_BASE_URL, api_key, members=staff, role=Role.ADMIN
    )
