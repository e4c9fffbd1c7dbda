"""Changes to who is in a workspace: add a member, change a role, remove one, invite someone new
by email. A workspace always keeps an admin: the rule is here, once, for the settings page, the
Django admin and the `members` command alike, checked with the admins' rows locked so that two
admins demoting each other at once cannot leave it with none."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest

from batches import audit, changes, invitations, roles, tasks
from batches.models import AuditEntry, Membership, Workspace
from batches.operations import Refused, require
from batches.roles import Ability

Action = AuditEntry.Action


def last_admin_refusal(workspace: Workspace, leaving: list[int], joining: int = 0) -> str:
    """Why these memberships may not all stop being admins (the workspace would have none, with
    `joining` new admins made in the same change), or "". Call it with the admins' rows locked
    (`lock_admins`)."""
    remaining = roles.admins(workspace).exclude(pk__in=leaving).exists() or joining > 0
    if leaving and roles.admins(workspace).filter(pk__in=leaving).exists() and not remaining:
        names = ", ".join(
            Membership.objects.filter(pk__in=leaving, role=Membership.Role.ADMIN)
            .values_list("user__username", flat=True)
            .order_by("user__username")
        )
        return (
            f"{names} {'is' if ',' not in names else 'are'} the last admin of {workspace.name}: "
            "make someone else an admin first."
        )
    return ""


def lock_admins(workspace: Workspace) -> None:
    list(roles.admins(workspace).select_for_update())


def _target(membership: Membership) -> str:
    return f"member {membership.user.get_username()}"


def add_member(
    workspace: Workspace,
    actor: AbstractBaseUser | None,
    user: User,
    role: str,
    *,
    request: HttpRequest | None = None,
) -> Membership:
    require(actor, workspace, Ability.MANAGE)
    with transaction.atomic():
        if workspace.memberships.filter(user=user).exists():
            raise Refused(f"{user.get_username()} is already a member of {workspace.name}.")
        membership = Membership.objects.create(workspace=workspace, user=user, role=role)
        audit.record(Action.MEMBER_ADD, request=request, actor=actor, workspace=workspace,
                     target=_target(membership), after={"role": role})  # fmt: skip
    roles.forget(user)
    changes.forget_visibility([user.pk])
    return membership


def change_role(
    membership: Membership,
    actor: AbstractBaseUser | None,
    role: str,
    *,
    request: HttpRequest | None = None,
) -> bool:
    """A member's new role; False when it is the one they have."""
    workspace = membership.workspace
    require(actor, workspace, Ability.MANAGE)
    with transaction.atomic():
        lock_admins(workspace)
        membership.refresh_from_db()
        before = membership.role
        if role == before:
            return False
        if role != Membership.Role.ADMIN:
            refusal = last_admin_refusal(workspace, [membership.pk])
            if refusal:
                raise Refused(refusal)
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(Action.MEMBER_ROLE, request=request, actor=actor, workspace=workspace,
                     target=_target(membership), before={"role": before},
                     after={"role": role})  # fmt: skip
    roles.forget(membership.user)
    if actor is not None:
        roles.forget(actor)
    return True


def remove_member(
    membership: Membership, actor: AbstractBaseUser | None, *, request: HttpRequest | None = None
) -> None:
    workspace = membership.workspace
    require(actor, workspace, Ability.MANAGE)
    with transaction.atomic():
        lock_admins(workspace)
        refusal = last_admin_refusal(workspace, [membership.pk])
        if refusal:
            raise Refused(refusal)
        membership.delete()
        audit.record(Action.MEMBER_REMOVE, request=request, actor=actor, workspace=workspace,
                     target=_target(membership), before={"role": membership.role})  # fmt: skip
    roles.forget(membership.user)
    if actor is not None:
        roles.forget(actor)
    changes.forget_visibility([membership.user_id])


def invite(
    workspace: Workspace,
    actor: AbstractBaseUser | None,
    email: str,
    role: str,
    *,
    request: HttpRequest | None = None,
) -> AbstractBaseUser:
    """A login for someone new, a member with `role`, and the email with the link to set a
    password, sent by a worker once this commits."""
    require(actor, workspace, Ability.MANAGE)
    with transaction.atomic():
        user = invitations.invite(workspace, email, role)
        tasks.send_invitation.delay_on_commit(
            user.pk, workspace.pk, actor.pk if actor is not None else None
        )
        audit.record(Action.MEMBER_INVITE, request=request, actor=actor, workspace=workspace,
                     target=f"member {user.get_username()}",
                     after={"email": email, "role": role})  # fmt: skip
    changes.forget_visibility([user.pk])
    return user
