"""Placing requests, in file order, into batches within the API's limits."""

from dataclasses import dataclass

from django.conf import settings

# A create body is {"requests":[ ... ]}: what it costs besides the requests themselves (written
# with a line break after the bracket and before the brace, see batches.intake.accepted).
ENVELOPE_BYTES = len(b'{"requests":[\n\n]}')
# Each request in a body is followed by ",\n" (the last one by "\n").
SEPARATOR_BYTES = 2


@dataclass
class Part:
    requests: int = 0
    bytes: int = ENVELOPE_BYTES


class Splitter:
    def __init__(self, max_requests: int | None = None, max_bytes: int | None = None):
        self.max_requests = max_requests or settings.MAX_BATCH_REQUESTS
        self.max_bytes = max_bytes or settings.MAX_BATCH_BYTES
        self.parts: list[Part] = []
        self._current: Part | None = None

    def place(self, size: int) -> int:
        """The index of the part a request of `size` bytes (its JSON) goes in."""
        current = self._current
        cost = size + SEPARATOR_BYTES
        if (
            current is None
            or current.requests >= self.max_requests
            or current.bytes + cost > self.max_bytes
        ):
            current = self._current = Part()
            self.parts.append(current)
        current.requests += 1
        current.bytes += cost
        return len(self.parts) - 1
