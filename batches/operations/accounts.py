"""Changes to a person's own login: a password set from a link (a reset or an invitation).
Django's views set it; this records it."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from batches import audit
from batches.models import AuditEntry


def password_set(user: AbstractBaseUser, *, how: str, request: HttpRequest | None = None) -> None:
    audit.record(AuditEntry.Action.PASSWORD_SET, request=request, actor=user, target=how)
