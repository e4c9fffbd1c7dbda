"""Beta features a create call may name in its `anthropic-beta` header, and the limits they
change: one table for the file check and the emulator, so both apply what the API does.

A name the table does not know is still sent (the API may know it); it changes no limit here.
"""

import re
from collections.abc import Iterable, Sequence

NAME = re.compile(r"\A[a-z0-9][a-z0-9.-]{0,63}\Z")
# At most this many betas on one upload.
MAX_BETAS = 5

# What each known beta is, in a few words (the upload page lists them).
KNOWN = {
    "output-128k-2025-02-19": "Up to 128,000 output tokens from Claude Sonnet 3.7",
}
# The output limit (max_tokens) a beta raises, by model id prefix.
OUTPUT_LIMITS: dict[str, dict[str, int]] = {
    "output-128k-2025-02-19": {"claude-3-7-sonnet": 128_000},
}


class BetaError(ValueError):
    """What is wrong with the betas as typed; the message says how to fix it."""


def parse(text: str | list[str]) -> list[str]:
    """Beta names from a comma-separated text (or a list of them): trimmed, lower case, once
    each, in the order given. Raises BetaError."""
    pieces = text if isinstance(text, list) else [text]
    found: list[str] = []
    for piece in pieces:
        for raw in piece.split(","):
            name = raw.strip().lower()
            if not name or name in found:
                continue
            if not NAME.match(name):
                raise BetaError(
                    f"“{name[:64]}” is not a beta's name: letters, digits, dots and dashes, "
                    "for example output-128k-2025-02-19."
                )
            found.append(name)
    if len(found) > MAX_BETAS:
        raise BetaError(f"{len(found)} betas: one upload names at most {MAX_BETAS}.")
    return found


def output_limit(model: str, limit: int | None, betas: Iterable[str] | None) -> int | None:
    """A model's max_tokens limit with these betas (None: no limit known)."""
    best = limit
    for beta in betas or ():
        for prefix, raised in OUTPUT_LIMITS.get(beta, {}).items():
            if model.startswith(prefix) and best is not None and raised > best:
                best = raised
    return best


def header(betas: Sequence[str] | None) -> dict[str, str]:
    """The request header that names them, or none."""
    return {"anthropic-beta": ",".join(betas)} if betas else {}
