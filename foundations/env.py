"""Small, strict readers for settings that come from the environment.

Each helper either returns a value of the right type or raises `ImproperlyConfigured` with a
message that names the variable, the bad value and what would be accepted, so a typo in a
deployment fails at start-up instead of behaving oddly later.

Every reader also accepts `NAME_FILE`: the path of a file holding the value (for secrets mounted
by an orchestrator). Setting both is an error, because one of them would be silently ignored.
"""

import enum
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Unset(enum.Enum):
    """The type of `_UNSET`: no default given (None or "" could be meant as one)."""

    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET
Environ = Mapping[str, str]


def _raw(name: str, environ: Environ | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    file_path = environ.get(f"{name}_FILE")
    if value is not None and file_path is not None:
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    if file_path is not None:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE={file_path!r} cannot be read: {exc.strerror}."
            ) from exc
    return value


def env_str(name: str, default: str | _Unset = _UNSET, environ: Environ | None = None) -> str:
    value = _raw(name, environ)
    if value is None or value == "":
        if default is _UNSET:
            raise ImproperlyConfigured(f"{name} is required but not set.")
        return default
    return value


def env_bool(name: str, default: bool, environ: Environ | None = None) -> bool:
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean: use one of true/false, yes/no, on/off, 1/0."
    )


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Environ | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is too small: the minimum is {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is too large: the maximum is {maximum}.")
    return number


def env_float(
    name: str, default: float, *, minimum: float | None = None, environ: Environ | None = None
) -> float:
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={value!r} must be a finite number.")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is too small: the minimum is {minimum}.")
    return number


def env_list(name: str, default: list[str], environ: Environ | None = None) -> list[str]:
    """A comma-separated list; blank items are dropped, surrounding spaces ignored."""
    value = _raw(name, environ)
    if value is None or value.strip() == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(
    name: str,
    default: str | _Unset = _UNSET,
    *,
    schemes: tuple[str, ...],
    environ: Environ | None = None,
) -> str:
    value = env_str(name, default, environ)
    if value is None or value == "":
        return value
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        # The value itself is not echoed: a database or Redis URL may carry a password.
        raise ImproperlyConfigured(
            f"{name} is not a valid URL: expected one starting with "
            + " or ".join(f"{s}://" for s in schemes)
            + "."
        )
    return value


def env_choice(
    name: str, default: str, choices: Collection[str], environ: Environ | None = None
) -> str:
    value = env_str(name, default, environ)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")
    return value


def env_timezone(name: str, default: str, environ: Environ | None = None) -> str:
    import zoneinfo

    value = env_str(name, default, environ)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a time zone name such as UTC or Europe/Paris."
        ) from None
    return value
