"""Emails that set a password: inviting someone new to a workspace (a login without a password,
and a one-time link, Django's password-reset token machinery with its own salt, where they set
one), and a password reset. A link expires after PASSWORD_RESET_TIMEOUT and stops working once a
password is set; no password is ever sent by email.

Both emails are sent by a task (`send_invitation`, `send_password_reset`), never inside the
request: the page answers in the same time whether or not an address has a login, and a slow
mail server slows no page. Links start with SITE_URL, never with the Host a request named."""

import logging
import re
import smtplib
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import User
from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
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
logger = logging.getLogger(__name__)


def _free_username(email: str) -> str:
    users = get_user_model().objects
    stem = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "member"
    name, number = stem, 1
    while users.filter(username=name).exists():
        number += 1
        name = f"{stem}{number}"
    return name


def invitation_link(user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = invitation_tokens.make_token(user)
    return settings.SITE_URL + reverse("accept_invitation", args=[uid, token])


@transaction.atomic
def invite(workspace: Workspace, email: str, role: str) -> User:
    """A new login for `email` in the workspace with `role`; the caller sends the email
    (`send_invitation`, by a task once the transaction commits)."""
    pending = get_user_model().objects.filter(email__iexact=email).first()
    if pending is not None and not pending.has_usable_password():
        # Invited before, link expired or lost: the same login, a new link.
        user = pending
    else:
        user = get_user_model()(username=_free_username(email), email=email)
        user.set_unusable_password()
        user.save()
    Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    return user


def send_invitation(user_pk: int, workspace_pk: int, inviter_pk: int | None) -> bool:
    """The invitation email, with a fresh link; False when there is no one to send it to any
    more (the login set a password meanwhile, or left the workspace)."""
    users = get_user_model().objects
    user = users.filter(pk=user_pk).first()
    membership = Membership.objects.filter(user_id=user_pk, workspace_id=workspace_pk).first()
    if user is None or membership is None or user.has_usable_password() or not user.email:
        return False
    inviter = users.filter(pk=inviter_pk).first() if inviter_pk else None
    workspace = membership.workspace
    days = max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)
    body = (
        f"{inviter.get_username() if inviter else 'An administrator'} invited you to the "
        f"workspace “{workspace.name}” of the batch dashboard, as "
        f"{Membership.Role(membership.role).label.lower()}.\n\n"
        f"Your login is: {user.get_username()}\n\n"
        f"Set your password here (the link works once, for {days} day{'s' if days != 1 else ''}):"
        f"\n{invitation_link(user)}\n\nIf you did not expect this, ignore this email.\n"
    )
    subject = " ".join(f"You are invited to {workspace.name} on the batch dashboard".split())
    try:
        send_mail(subject, body, None, [user.email])
    except (smtplib.SMTPException, OSError) as error:
        logger.warning("The invitation of user %s failed: %s", user_pk, error)
        return False
    return True


def send_password_reset(user_pk: int | None) -> bool:
    """The password reset email of one login, as Django's reset form writes it; None (an
    address with no login) sends nothing. The form's page queues this task either way."""
    if user_pk is None:
        return False
    user = get_user_model().objects.filter(pk=user_pk, is_active=True).first()
    if user is None or not user.email or not user.has_usable_password():
        return False
    site = urlsplit(settings.SITE_URL)
    context = {
        "email": user.email,
        "domain": site.netloc,
        "site_name": site.netloc,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "user": user,
        "token": default_token_generator.make_token(user),
        "protocol": site.scheme,
    }
    # Django's own sending: it logs a mail server's failure instead of raising.
    PasswordResetForm().send_mail(
        "registration/password_reset_subject.txt",
        "registration/password_reset_email.html",
        context,
        None,
        user.email,
    )
    return True
