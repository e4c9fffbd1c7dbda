"""Encryption of API keys at rest (Fernet), with key rotation.

FERNET_KEYS lists one or more keys, newest first: the first encrypts, all of them decrypt, so a
new key can be put in front and `manage.py rotatekeys` re-encrypts every stored API key with it.
"""

from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from foundations.errors import remember_secret

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


@cache
def _fernet() -> "MultiFernet":
    # Imported here: the key is needed by the processes that call the API, not by every start.
    from cryptography.fernet import Fernet, MultiFernet

    try:
        return MultiFernet([Fernet(key) for key in settings.FERNET_KEYS])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FERNET_KEYS must be url-safe base64 keys of 32 bytes, comma-separated; make one "
            "with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc


@sensitive_variables("plain")
def encrypt(plain: str) -> str:
    remember_secret(plain)
    return _fernet().encrypt(plain.encode()).decode()


@sensitive_variables("plain")
def decrypt(token: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        plain = _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored API key cannot be decrypted with FERNET_KEYS: was a key removed before "
            "`manage.py rotatekeys` ran?"
        ) from exc
    remember_secret(plain)
    return plain


@sensitive_variables()
def rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode()


@sensitive_variables("key")
def mask(key: str) -> str:
    """What may be shown of a key: its family prefix and last four characters."""
    key = key.strip()
    if len(key) < 12:
        return "…" + key[-2:] if key else ""
    prefix = "sk-ant-" if key.startswith("sk-ant-") else key[:3]
    return f"{prefix}...{key[-4:]}"
