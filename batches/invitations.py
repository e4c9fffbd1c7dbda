"""Inviting someone new to a workspace by email: a login without a password, and a one-time link
(Django's password-reset token machinery, with its own salt) where they set one. The link
expires after PASSWORD_RESET_TIMEOUT and stops working once a password is set; no password is
ever sent by email."""

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from batches.models import Membership, Workspace


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    # Apart from password resets: a reset link is not an invitation, nor the other way round.
    key_salt = "batches.invitations.InvitationTokenGenerator"


invitation_tokens = InvitationTokenGenerator()


def _free_username(email: str) -> str:
    users = get_user_model().objects
    stem = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "member"
    name, number = stem, 1
    while users.filter(username=name).exists():
        number += 1
        name = f"{stem}{number}"
    return name


def invitation_link(request, user) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = invitation_tokens.make_token(user)
    return request.build_absolute_uri(reverse("accept_invitation", args=[uid, token]))


@transaction.atomic
def invite(request, workspace: Workspace, email: str, role: str):
    """A new login for `email` in the workspace with `role`, and the email with its link (sent
    once the transaction commits)."""
    pending = get_user_model().objects.filter(email__iexact=email).first()
    if pending is not None and not pending.has_usable_password():
        # Invited before, link expired or lost: the same login, a new link.
        user = pending
    else:
        user = get_user_model()(username=_free_username(email), email=email)
        user.set_unusable_password()
        user.save()
    Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    link = invitation_link(request, user)
    days = max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)
    inviter = request.user.get_username()
    body = (
        f"{inviter} invited you to the workspace “{workspace.name}” of the batch dashboard, "
        f"as {Membership.Role(role).label.lower()}.\n\n"
        f"Your login is: {user.get_username()}\n\n"
        f"Set your password here (the link works once, for {days} day{'s' if days != 1 else ''}):"
        f"\n{link}\n\nIf you did not expect this, ignore this email.\n"
    )
    transaction.on_commit(
        lambda: send_mail(
            f"You are invited to {workspace.name} on the batch dashboard",
            body,
            None,
            [email],
        )
    )
    return user
