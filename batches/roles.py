"""Who may do what in a workspace: a membership's role, checked on the server by every view
(batches.views.access) and asked by templates (`workspace|may:"submit"`) to show only what the
person may do.

- viewer: sees batches and results; downloads them unless the workspace turns downloads off;
- submitter: also uploads, submits, stops checks, cancels, resubmits and refreshes;
- admin: also deletes batches and manages the workspace (members, key, base URL, notices,
  downloads). The site's superuser is an admin of every workspace.
"""

from collections.abc import Iterable
from enum import StrEnum

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from batches.models import Membership, Workspace

Role = Membership.Role
# Who asks: a login (request.user, an operation's actor) or the anonymous visitor.
Person = AbstractBaseUser | AnonymousUser
RANK = {Role.VIEWER: 1, Role.SUBMITTER: 2, Role.ADMIN: 3}


class Ability(StrEnum):
    VIEW = "view"
    DOWNLOAD = "download"
    SUBMIT = "submit"
    DELETE = "delete"
    MANAGE = "manage"


NEEDS = {
    Ability.VIEW: Role.VIEWER,
    Ability.DOWNLOAD: Role.VIEWER,
    Ability.SUBMIT: Role.SUBMITTER,
    Ability.DELETE: Role.ADMIN,
    Ability.MANAGE: Role.ADMIN,
}

# What a 403 says: what the role lacks and who can change it.
REFUSALS = {
    Ability.VIEW: "You are not a member of this workspace.",
    Ability.DOWNLOAD: "Downloads of results are turned off in this workspace; its admins can "
    "turn them on in the workspace's settings.",
    Ability.SUBMIT: "Your role in this workspace is viewer: uploading, submitting, canceling, "
    "resubmitting and refreshing need the submitter role. Ask one of the workspace's admins.",
    Ability.DELETE: "Only the workspace's admins may delete batches. Ask one of them.",
    Ability.MANAGE: "Only the workspace's admins may change its members and settings.",
}

# Per request, the roles of the person asking, loaded once (one query) and kept on the user
# object, which lives as long as the request.
_CACHE_ATTRIBUTE = "_workspace_roles"


def roles_of(user: Person) -> dict[int, str]:
    """{workspace id: role} of every workspace the person is a member of."""
    if not user.is_authenticated:
        return {}
    roles = getattr(user, _CACHE_ATTRIBUTE, None)
    if roles is None:
        # By id: a lookup by object wants the user model itself, not any AbstractBaseUser.
        roles = dict(Membership.objects.filter(user=user.pk).values_list("workspace_id", "role"))
        setattr(user, _CACHE_ATTRIBUTE, roles)
    return roles


def forget(user: Person) -> None:
    """After a change to this person's memberships within the same request."""
    if hasattr(user, _CACHE_ATTRIBUTE):
        delattr(user, _CACHE_ATTRIBUTE)


def role_in(user: Person, workspace: Workspace) -> Role | None:
    if not user.is_authenticated:
        return None
    # AbstractBaseUser has no is_superuser; the user model (django's User) has it from here.
    if isinstance(user, PermissionsMixin) and user.is_superuser:
        return Role.ADMIN
    role = roles_of(user).get(workspace.pk)
    return Role(role) if role else None


def may(user: Person, workspace: Workspace, ability: Ability | str) -> bool:
    role = role_in(user, workspace)
    if role is None:
        return False
    ability = Ability(ability)
    if ability == Ability.DOWNLOAD and not workspace.results_downloadable:
        return role == Role.ADMIN
    return RANK[role] >= RANK[NEEDS[ability]]


def workspaces_where(
    user: Person, workspaces: Iterable[Workspace], ability: Ability | str
) -> list[Workspace]:
    """Those of `workspaces` in which the person may do this, in their order."""
    return [workspace for workspace in workspaces if may(user, workspace, ability)]


def require(user: Person, workspace: Workspace, ability: Ability) -> None:
    """PermissionDenied (a 403 page that says why) unless the person may."""
    if not may(user, workspace, ability):
        raise PermissionDenied(REFUSALS[ability])


def admins(workspace: Workspace) -> QuerySet[Membership]:
    return Membership.objects.filter(workspace=workspace, role=Role.ADMIN)


def abilities(user: Person, workspace: Workspace) -> dict[str, bool]:
    """{"view": True, "submit": False, ...}: what a page may offer this person in the workspace."""
    return {ability.value: may(user, workspace, ability) for ability in Ability}
