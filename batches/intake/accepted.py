"""What one segment's pass keeps, and the form of the create bodies it writes them in.

A create body is `{"requests":[` and a line break (BODY_HEAD), then one request per line, each
followed by `,` and a line break (SEPARATOR; the last one without the comma), then `]}`
(BODY_TAIL): a valid JSON document in which every request can be found again by its byte range.
`Accepted` holds a segment's valid requests (custom_id, line, size) and, when bodies are kept,
writes their bytes in that form as the pass goes; `SegmentResult` is everything a pass found, in
a form one process can hand another (batches.intake.segments pickles it).

No checking happens here: the lines are checked in batches.intake.line_checking, the segments
put together in batches.intake.merging, and the bodies cut into batches in batches.intake.bodies.
"""

import os
import tempfile
from array import array
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from batches.intake.estimating import Estimate
from batches.intake.problems import Problem
from foundations.local_files import scratch_dir

BODY_HEAD = b'{"requests":[\n'
BODY_TAIL = b"\n]}"
SEPARATOR = b",\n"


@dataclass(frozen=True)
class BodyPlace:
    """Where a segment writes its requests: from `start` in the file at `path`, so that
    segments checked at once by several processes write one file side by side; another
    segment's requests follow unless this is the `last`."""

    path: str
    start: int
    last: bool


class Accepted:
    """The valid requests of a segment in file order: their custom_id, line and size, and (when
    a body is kept) their bytes, each followed by `,\\n`, in a temporary file.

    That file starts with BODY_HEAD, so that when every request goes into one batch (nearly
    every file) it is the batch's create body as it stands: finishing it is cutting the last
    separator and writing BODY_TAIL, not copying it (compose_bodies).
    """

    def __init__(self, keep_bodies: bool, place: BodyPlace | None = None):
        self.custom_ids: list[str] = []
        self.lines = array("q")
        self.lengths = array("q")
        self.body_path: str | None = None
        self.body_start = 0  # where the first request is in the file
        self.body_size = 0
        self._owns_file = False  # a file shared by segments is removed by whoever made it
        self._bounded = place is not None and not place.last  # another segment's requests follow
        self._body = None
        if place is not None:
            descriptor = os.open(place.path, os.O_WRONLY)
            os.lseek(descriptor, place.start, os.SEEK_SET)
            self.body_path, self.body_start = place.path, place.start
        elif keep_bodies:
            descriptor, self.body_path = tempfile.mkstemp(
                dir=scratch_dir(), prefix="check-", suffix=".body"
            )
            os.write(descriptor, BODY_HEAD)
            self.body_start = len(BODY_HEAD)
            self._owns_file = True
        else:
            return
        self._body = os.fdopen(descriptor, "wb", buffering=1 << 20)

    def __len__(self) -> int:
        return len(self.custom_ids)

    def write(self, data: bytes, room: int | None = None) -> None:
        """Append requests; `room`: how much they may take by now, the bytes plus the lines
        read so far (a request takes one byte more in a body than its line with its line
        break). The next segment's requests start where this one's room ends: never write past
        it. (The last line of a file may have no line break, but no segment follows it.)"""
        if self._body is None:
            return
        self.body_size += len(data)
        if self._bounded and room is not None and self.body_size > room:
            raise RuntimeError("A segment's requests outgrew the room kept for them.")
        self._body.write(data)

    def offsets(self) -> list[int]:
        """Where each request starts in the body file."""
        steps = (length + len(SEPARATOR) for length in self.lengths)
        return list(accumulate(steps, initial=self.body_start))[:-1]

    @property
    def body_end(self) -> int:
        return self.body_start + self.body_size

    def finish(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def discard(self) -> None:
        self.finish()
        if self.body_path and self._owns_file:
            Path(self.body_path).unlink(missing_ok=True)


@dataclass
class SegmentResult:
    """What one segment's pass found, in a form one process can hand another."""

    accepted: Accepted
    first_line: dict[str, int]  # every custom_id used in the segment, valid or not
    problems: list[Problem]  # the first ones, by line
    problem_count: int
    report_path: str | None  # every problem, as CSV rows (no header)
    rejected: set[int]
    estimate: Estimate
    preview: list[dict]
    lines_read: int
    complete: bool
