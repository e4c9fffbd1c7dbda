"""The check of a whole upload: `check_file` reads it, checks every line once and (for a stored
submission) keeps the valid requests once, in the create bodies that Submit sends as they are.

One pass over the file, or, for a large uncompressed JSONL file where the system can fork,
several passes over its segments at once whose findings are merged in file order: everything
else is the same code either way. The rooms it is built from:

- `line_checking`: `Check`, one pass over one segment's lines (the hot loop).
- `accepted`: what a pass keeps, and the form of a create body.
- `segments`: the segments checked by forked processes at once.
- `merging`: the segments' findings as one `Report`, and where each request goes (`index_rows`).
- `bodies`: each batch's create body written (`compose_bodies`).

Callers need only this module: the names they use are imported here.
"""

import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from batches.intake.accepted import BodyPlace
from batches.intake.bodies import PartBody, compose_bodies
from batches.intake.line_checking import Check, CheckStopped
from batches.intake.merging import Merged, Report, index_rows, merge
from batches.intake.problems import Problem
from batches.intake.reading import GZIP_MAGIC, Limits, Lines
from batches.intake.segments import check_in_segments
from batches.intake.templating import CsvOptions
from foundations.local_files import LimitedReader

__all__ = [
    "Check",
    "CheckStopped",
    "Merged",
    "PartBody",
    "Report",
    "check_file",
    "compose_bodies",
    "discard",
    "index_rows",
]


def check_file(
    open_range: Callable[[int, int | None], LimitedReader],
    size: int,
    fmt: str,
    *,
    models: list[dict] | None,
    csv_options: CsvOptions | None = None,
    oversize: str = "split",
    keep_bodies: bool = False,
    report_dir: str | None = None,
    progress: Callable[[int, int, int, int], bool] | None = None,
    limits: Limits | None = None,
    processes: int = 1,
) -> Merged:
    """Check a whole file: `open_range(start, end)` streams its bytes (`end` None: to the end).

    A plain JSONL file of CHECK_PARALLEL_MIN_BYTES or more is read by `processes` processes at
    once when the system can fork; anything else (gzip, CSV, a small file) in one pass.
    """
    limits = limits or Limits.from_settings(settings.CHECK_MAX_SECONDS)
    notes = []
    if models is None:
        notes.append(
            "The workspace's model list could not be read, so model names were not checked."
        )

    def make_check(
        progress: Callable[[int, int, int, int], bool] | None = None,
        body_place: BodyPlace | None = None,
    ) -> Check:
        return Check(
            models=models,
            keep_bodies=keep_bodies,
            report_dir=report_dir,
            progress=progress,
            body_place=body_place,
        )

    if size == 0:
        check = make_check()
        check.problem(
            Problem(None, "", "The file is empty.", "Choose the file that holds your requests.")
        )
        result = check.run(Lines(_Nothing(), limits), fmt, csv_options)
        return merge([result], oversize=oversize, notes=notes)
    if (
        processes > 1
        and fmt == "jsonl"
        and size >= settings.CHECK_PARALLEL_MIN_BYTES
        and hasattr(os, "fork")
        and not _gzipped(open_range)
    ):
        results = check_in_segments(
            open_range,
            size,
            processes=processes,
            make_check=make_check,
            limits=limits,
            progress=progress,
            keep_bodies=keep_bodies,
        )
    else:
        lines = Lines(open_range(0, None), limits)
        try:
            results = [make_check(progress=progress).run(lines, fmt, csv_options)]
        finally:
            lines.raw.close()
    return merge(results, oversize=oversize, notes=notes)


def _gzipped(open_range: Callable[[int, int | None], LimitedReader]) -> bool:
    with open_range(0, 2) as head:
        return head.read(2) == GZIP_MAGIC


class _Nothing:
    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def discard(merged: Merged) -> None:
    """Remove the temporary files a check left (its bodies and problem rows)."""
    for result in merged.segments:
        result.accepted.discard()
        if result.accepted.body_path:  # a file the segments shared, or a body not moved
            Path(result.accepted.body_path).unlink(missing_ok=True)
    for path in merged.report_paths:
        Path(path).unlink(missing_ok=True)
