"""Text every database and page can hold: PostgreSQL keeps no NUL character in text or JSON, so
one found in a request is a problem to report, and one in an answer is removed before storing."""

from typing import Any


def holds_nul(value: object) -> bool:
    """Whether a JSON value (a string, or lists and objects of them) holds a NUL anywhere."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def without_nul(value: Any) -> Any:
    """The same JSON value with every NUL removed from its strings."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value
