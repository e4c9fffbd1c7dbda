"""Error reports (Django's debug page, the emails ADMINS get) that never show an API key.

Django hides settings and request data whose names look secret, and the locals of functions
marked with `sensitive_variables`. A key can still sit in some other frame's locals (inside
httpx, in a header mapping), so this filter also hides any local whose text holds one of the
keys this process has decrypted (`batches.crypto` tells it which), whatever its name.
"""

from collections.abc import ItemsView
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

_secrets: set[str] = set()
MAX_SECRETS = 1000


def remember_secret(value: str) -> None:
    """A secret this process holds in clear (a decrypted API key), to hide from reports."""
    if value and len(_secrets) < MAX_SECRETS:
        _secrets.add(value)


def holds_secret(value: object) -> bool:
    if not _secrets:
        return False
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:  # a repr that fails tells nothing either
        return False
    return any(secret in text for secret in _secrets)


class KeySafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        """Always, the debug page included: Django's own filter stands aside while DEBUG is on,
        which showed a key typed into a form on a developer's 500 page (or a screen share)."""
        return True

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> ItemsView[str, Any]:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        # The frame's names, each once (Django's own are a dict's items too).
        return {
            name: self.cleansed_substitute if holds_secret(value) else value
            for name, value in variables
        }.items()

    def get_safe_request_meta(self, request: HttpRequest) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        return {
            name: self.cleansed_substitute if holds_secret(value) else value
            for name, value in meta.items()
        }
