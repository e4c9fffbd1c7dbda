"""Reading a file in segments: a large uncompressed JSONL file checked by several processes at
once, each over its own stretch of lines, with the same Check as a single pass.

The children are forked, so they share the compiled schema and start at once; they only read the
file and compute, touch no database and no connection of this process, and send their
SegmentResult back through a pipe. A segment names its lines as a single pass would, so each
starts once the lines before it are counted. What the segments found is put together in file
order by batches.intake.merging; a gzip file, a CSV or a small file is one pass (checking.check_file
decides).
"""

import os
import pickle
import signal
import struct
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from itertools import accumulate
from pathlib import Path
from types import TracebackType

from batches.intake.accepted import BODY_HEAD, BodyPlace, SegmentResult
from batches.intake.line_checking import Check
from batches.intake.reading import Limits, Lines
from foundations.local_files import LimitedReader, scratch_dir

# Counting line breaks runs about eight times as fast as checking the lines: the last segment,
# checked by the process that first counts the lines of all the others, is this much shorter.
COUNTING_SHARE = 1 / 8

# A stream of bytes [start, end) of the file being checked.
OpenRange = Callable[[int, int], LimitedReader]


def _segment_cuts(open_range: OpenRange, size: int, count: int) -> list[int]:
    """Where `count` segments of a plain file start (each at a line), and its size: the last
    segment a little shorter than the others (COUNTING_SHARE)."""
    weights = [1.0] * (count - 1) + [1.0 - COUNTING_SHARE]
    ends = list(accumulate(weights))
    cuts = [0]
    for end in ends[:-1]:
        guess = max(cuts[-1], int(size * end / ends[-1]))
        with open_range(guess, min(size, guess + (1 << 20))) as handle:
            block = handle.read()
        newline = block.find(b"\n")
        if newline == -1 or guess + newline + 1 >= size:
            break
        cuts.append(guess + newline + 1)
    cuts.append(size)
    return cuts


def _count_lines(open_range: OpenRange, start: int, end: int) -> int:
    """The line breaks in bytes [start, end), at memory speed."""
    lines = 0
    buffer = bytearray(1 << 22)
    with open_range(start, end) as handle:
        while count := handle.readinto(buffer):
            lines += buffer.count(b"\n", 0, count)
    return lines


def _shared_body_file() -> str:
    """The file every segment writes its requests into, BODY_HEAD written (check_in_segments)."""
    descriptor, path = tempfile.mkstemp(dir=scratch_dir(), prefix="check-", suffix=".body")
    with os.fdopen(descriptor, "wb") as body:
        body.write(BODY_HEAD)
    return path


def _pass_over(
    open_range: OpenRange,
    start: int,
    end: int,
    first_line: int,
    make_check: Callable[[], Check],
    limits: Limits,
) -> SegmentResult:
    lines = Lines(open_range(start, end), limits, start_line=first_line)
    try:
        return make_check().run(lines, "jsonl")
    finally:
        lines.raw.close()


class Progress:
    """Lines, bytes, requests and problems of every segment, in memory the processes share."""

    FORMAT = "qqqq"

    def __init__(self, segments: int) -> None:
        import mmap

        self.size = struct.calcsize(self.FORMAT)
        self.memory = mmap.mmap(-1, self.size * segments)

    def write(self, segment: int, *values: int) -> None:
        struct.pack_into(self.FORMAT, self.memory, segment * self.size, *values)

    def total(self) -> tuple[int, int, int, int]:
        totals = [0, 0, 0, 0]
        for offset in range(0, len(self.memory), self.size):
            for index, value in enumerate(struct.unpack_from(self.FORMAT, self.memory, offset)):
                totals[index] += value
        lines, raw_bytes, requests, problems = totals
        return lines, raw_bytes, requests, problems


def check_in_segments(
    open_range: OpenRange,
    size: int,
    *,
    processes: int,
    make_check: Callable[..., Check],
    limits: Limits,
    progress: Callable[[int, int, int, int], bool] | None,
    keep_bodies: bool = False,
) -> list[SegmentResult]:
    """Check a plain JSONL file of `size` bytes in `processes` segments at once: the last in
    this process, the others in forked children that send their results back through a pipe.
    `open_range(start, end)` gives a stream of those bytes (a child opens its own).

    A segment names its lines as a single pass would, so it starts once the lines before it are
    counted: the first at once, each next one as soon as this process has counted the lines of
    the one before (at memory speed, while the children check), and the last here.

    With `keep_bodies`, every segment writes its requests into one file, each from where the
    one before it can end at the most: a segment's bytes plus its lines (a request takes its
    line's bytes and one more). In a file of valid lines that is exactly where it does end, so
    the segments' requests lie one after another and the file is the create body as it stands.

    The children only read the file and compute; they touch no database and no connection of
    this process, and leave with os._exit, so nothing of this process is closed twice.
    """
    cuts = _segment_cuts(open_range, size, processes)
    last = len(cuts) - 2
    shared = Progress(last + 1)
    started = time.monotonic()
    body_path = _shared_body_file() if keep_bodies else None

    def reporter(segment: int) -> Callable[[int, int, int, int], bool]:
        def report(lines: int, raw_bytes: int, requests: int, problems: int) -> bool:
            shared.write(segment, lines, raw_bytes, requests, problems)
            if segment == last and progress is not None:
                return progress(*shared.total())
            # A child whose parent is gone (killed, or reaped by a time limit) stops.
            return segment == last or os.getppid() != 1

        return report

    def pass_over(segment: int, first_line: int, body_start: int) -> SegmentResult:
        place = None if body_path is None else BodyPlace(body_path, body_start, segment == last)
        return _pass_over(
            open_range,
            cuts[segment],
            cuts[segment + 1],
            first_line,
            lambda: make_check(progress=reporter(segment), body_place=place),
            _segment_limits(limits, started, first_line),
        )

    children = []
    try:
        first_line, body_start = 1, len(BODY_HEAD)
        for segment in range(last):
            children.append(_fork(partial(pass_over, segment, first_line, body_start)))
            lines = _count_lines(open_range, cuts[segment], cuts[segment + 1])
            first_line += lines
            body_start += cuts[segment + 1] - cuts[segment] + lines
        own = pass_over(last, first_line, body_start)
        results: list[SegmentResult] = []
        for pid, reader in children:
            with os.fdopen(reader, "rb") as incoming:
                status, value = pickle.loads(incoming.read())  # noqa: S301 (our own child)
            os.waitpid(pid, 0)
            if status != "ok":
                raise RuntimeError(f"A checking process failed: {value}")
            results.append(value)
        children = []
        results.append(own)
    except BaseException:
        if body_path is not None:
            Path(body_path).unlink(missing_ok=True)
        raise
    finally:
        for pid, _ in children:
            with _suppress_process_errors():
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return results


def _fork(work: Callable[[], SegmentResult]) -> tuple[int, int]:
    """Run `work` in a forked child; its result (or its error) comes back through the pipe
    whose reading end is returned with the child's pid."""
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        # Python warns about forking a process that has threads (a Celery worker's, a test
        # server's): a child that inherited a lock held by another thread could hang on it.
        # The child here takes no lock of the parent's: it reads a file, computes, writes to
        # a pipe and leaves with os._exit (logging's and the import system's locks are made
        # anew in a child).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            payload = pickle.dumps(("ok", work()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # handed to the parent, which reports it
            payload = pickle.dumps(("error", repr(error)))
            code = 1
        with os.fdopen(writer, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(writer)
    return pid, reader


def _segment_limits(limits: Limits, started: float, first_line: int) -> Limits:
    return Limits(
        max_bytes=limits.max_bytes,
        max_lines=max(0, limits.max_lines - first_line + 1),
        max_line_bytes=limits.max_line_bytes,
        max_seconds=None
        if limits.max_seconds is None
        else max(0.0, limits.max_seconds - (time.monotonic() - started)),
    )


class _suppress_process_errors:
    def __enter__(self) -> "_suppress_process_errors":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return kind is not None and issubclass(kind, (ProcessLookupError, ChildProcessError))
