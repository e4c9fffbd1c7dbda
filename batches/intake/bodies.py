"""Writing the create bodies: each batch's body, as Submit sends it, from the requests the
segments kept (batches.intake.accepted) and where merging placed them (batches.intake.merging).

When every request goes into one batch (nearly every file) and the segments wrote their requests
one after another into one file, that file already is the body: finishing it is cutting the last
separator and writing BODY_TAIL, not copying it. Otherwise runs of consecutive requests are
copied in large blocks (inside the kernel where it can). Nothing is re-encoded: the API receives
each request's bytes as the file held them.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from batches.intake.accepted import BODY_HEAD, BODY_TAIL, SEPARATOR, SegmentResult
from batches.intake.merging import Merged


@dataclass
class PartBody:
    path: str
    size: int
    requests: int


def compose_bodies(merged: Merged, directory: str) -> list[PartBody]:
    """Write each batch's create body. When every request goes into one batch and the segments'
    requests lie one after another in one file (see Accepted), that file is the body once its
    last separator is cut and BODY_TAIL written. Otherwise runs of consecutive requests are
    copied from the segments' bodies in large blocks, and the last `,` of each batch is cut."""
    if len(merged.report.parts) == 1 and not any(merged.dropped):
        contiguous = _contiguous_body(merged.segments)
        if contiguous is not None:
            path, end = contiguous
            with open(path, "r+b") as body:
                body.truncate(end - len(SEPARATOR))
                body.seek(0, os.SEEK_END)
                body.write(BODY_TAIL)
            size = end - len(SEPARATOR) + len(BODY_TAIL)
            return [PartBody(path, size, merged.report.parts[0]["requests"])]
    count = len(merged.report.parts)
    outputs = [
        tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below)
            dir=directory, prefix="part-", suffix=".json", delete=False
        )
        for _ in range(count)
    ]
    try:
        for out in outputs:
            out.write(BODY_HEAD)
        for result, drop, parts_of in zip(
            merged.segments, merged.dropped, merged.parts_of, strict=True
        ):
            accepted = result.accepted
            count = len(accepted)
            if not count:
                continue
            body_path = accepted.body_path
            if body_path is None:
                raise RuntimeError("Composing bodies needs a check made with keep_bodies=True.")
            with open(body_path, "rb") as body:
                if not drop and parts_of[0] == parts_of[count - 1]:
                    # Every request of the segment, in one batch: its requests are one run.
                    _copy(body, accepted.body_start, accepted.body_end, outputs[parts_of[0]])
                    continue
                starts = accepted.offsets()
                run: tuple[int, int] | None = None  # (start, part) of the run being gathered
                end = 0
                for position in range(count + 1):
                    part = None if position == count or position in drop else parts_of[position]
                    if run is not None and part != run[1]:
                        _copy(body, run[0], end, outputs[run[1]])
                        run = None
                    if part is None:
                        continue
                    if run is None:
                        run = (starts[position], part)
                    end = starts[position] + accepted.lengths[position] + len(SEPARATOR)
        bodies = []
        for index, out in enumerate(outputs):
            out.flush()
            # Every request was copied with its separator; the last one of a batch has none.
            out.seek(-len(SEPARATOR), os.SEEK_END)
            out.truncate()
            out.write(BODY_TAIL)
            out.close()
            bodies.append(
                PartBody(
                    out.name, os.path.getsize(out.name), merged.report.parts[index]["requests"]
                )
            )
        return bodies
    except BaseException:
        for out in outputs:
            out.close()
            Path(out.name).unlink(missing_ok=True)
        raise


def _contiguous_body(segments: list[SegmentResult]) -> tuple[str, int] | None:
    """The one file in which the segments' requests follow each other from just after
    BODY_HEAD, with nothing between them, and where the last one ends; None when they do not."""
    paths = {result.accepted.body_path for result in segments if len(result.accepted)}
    if len(paths) != 1 or None in paths:
        return None
    expected = len(BODY_HEAD)
    for result in segments:
        if not len(result.accepted):
            continue
        if result.accepted.body_start != expected:
            return None
        expected = result.accepted.body_end
    path = paths.pop()
    return None if path is None else (path, expected)


def _copy(source: IO[bytes], start: int, end: int, out: IO[bytes]) -> None:
    """Bytes [start, end) of `source` appended to `out`: inside the kernel where it can
    (copy_file_range, no trip through Python; a tenth of a second less for 100 MB), else in
    4 MB blocks."""
    left = end - start
    if hasattr(os, "copy_file_range") and left > 0:
        out.flush()
        try:
            while left > 0:
                copied = os.copy_file_range(source.fileno(), out.fileno(), left, start)
                if not copied:
                    break
                start += copied
                left -= copied
        except OSError:  # a file system that cannot: the blocks below take the rest
            pass
        # The copy moved the file's own position, not the buffered writer's idea of it.
        out.seek(0, os.SEEK_END)
    source.seek(start)
    while left > 0:
        block = source.read(min(left, 1 << 22))
        if not block:
            break
        out.write(block)
        left -= len(block)
