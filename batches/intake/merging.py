"""Merging the segments: what several segments' passes found (or one pass's), put together in
file order as one report, as if one pass had read the whole file.

A `custom_id` used in two segments is a duplicate like any other (the later one is dropped and
reported), a cap met in one segment ends the file there, and the batches are cut from the whole
file's requests (`_place`): each kept request gets its batch and its offset in that batch's
body, which batches.intake.bodies writes and `index_rows` records. The common case (one batch,
no duplicates across segments) costs no Python loop over the requests.
"""

import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from batches.intake.accepted import BODY_HEAD, BODY_TAIL, SEPARATOR, SegmentResult
from batches.intake.estimating import Estimate
from batches.intake.line_checking import PREVIEW_REQUESTS
from batches.intake.problems import FIRST_PROBLEMS, Problem, ProblemLog
from batches.intake.splitting import Part, Splitter


@dataclass
class Report:
    request_count: int = 0
    request_bytes: int = 0
    rejected_count: int = 0  # lines or rows left out for their problems
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    parts: list[dict] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines_read: int = 0
    complete: bool = True  # False when a cap or a damaged file ended the reading early

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.request_count > 0


@dataclass
class Merged:
    report: Report
    segments: list[SegmentResult]
    # Per segment: which of its accepted requests a later look dropped (a custom_id already used
    # in an earlier segment), and where each kept one goes: its batch and its offset in that
    # batch's body.
    dropped: list[set[int]]
    parts_of: list[array]
    offsets: list[array]
    report_paths: list[str]


def merge(results: list[SegmentResult], *, oversize: str, notes: list[str] | None = None) -> Merged:
    """The segments' findings as one report, as if one pass had read the file."""
    report = Report(notes=list(notes or []))
    seen: dict[str, int] = {}
    dropped: list[set[int]] = []
    cross: list[Problem] = []
    estimate = Estimate()
    complete = True
    used: list[SegmentResult] = []
    for index, result in enumerate(results):
        if not complete:
            # An earlier segment stopped at a cap: what follows it was never meant to be read.
            result.accepted.discard()
            if result.report_path:
                Path(result.report_path).unlink(missing_ok=True)
            continue
        used.append(result)
        drop: set[int] = set()
        # Set operations in C: a custom_id used again in a later segment is rare, and only
        # then are the segment's requests walked one by one.
        repeated = seen.keys() & result.first_line.keys() if seen else set()
        if repeated:
            for position, custom_id in enumerate(result.accepted.custom_ids):
                if custom_id in repeated:
                    drop.add(position)
                    line = result.accepted.lines[position]
                    cross.append(
                        Problem(
                            line,
                            "custom_id",
                            f"custom_id {custom_id!r} was already used on line "
                            f"{seen[custom_id]:,}.",
                            "Give every request its own custom_id.",
                        )
                    )
                    result.rejected.add(line)
        if index + 1 < len(results):  # what the segments after this one are checked against
            earlier = {custom_id: seen[custom_id] for custom_id in repeated}
            seen.update(result.first_line)
            seen.update(earlier)  # a custom_id's first line is the one in the earliest segment
        dropped.append(drop)
        estimate.merge(result.estimate)
        complete = result.complete
    if cross:
        _remove_from_estimate(estimate, used, dropped)
    report.request_count = sum(len(r.accepted) for r in used) - sum(len(d) for d in dropped)
    report.rejected_count = sum(len(result.rejected) for result in used)
    report.lines_read = sum(result.lines_read for result in used)
    report.complete = complete
    parts_of, offsets, splitter = _place(used, dropped)
    report.request_bytes = sum(sum(result.accepted.lengths) for result in used) - sum(
        result.accepted.lengths[p] for result, drop in zip(used, dropped, strict=True) for p in drop
    )
    report.parts = [{"requests": part.requests, "bytes": part.bytes} for part in splitter.parts]
    for result in used:
        report.preview.extend(result.preview[: PREVIEW_REQUESTS - len(report.preview)])
    report.estimate = estimate.as_dict()
    report.models = {row["model"]: row["requests"] for row in report.estimate["models"]}
    extra: list[Problem] = []
    most = settings.MAX_UPLOAD_BATCHES * settings.MAX_BATCH_REQUESTS
    if report.request_count > most:
        extra.append(
            Problem(
                None,
                "",
                f"The file holds more than {most:,} requests: one upload makes at most "
                f"{settings.MAX_UPLOAD_BATCHES} batches.",
                "Split the file, or submit it in several uploads.",
            )
        )
        report.complete = False
    if report.request_count == 0 and not any(r.problem_count for r in used) and not cross:
        extra.append(Problem(None, "", "The file holds no requests.", "Add at least one request."))
    if len(report.parts) > 1 and oversize == "refuse":
        extra.append(
            Problem(
                None,
                "",
                f"The file holds {report.request_count:,} requests "
                f"({report.request_bytes / 1e6:,.1f} MB); one batch takes at most "
                f"{settings.MAX_BATCH_REQUESTS:,} requests and "
                f"{settings.MAX_BATCH_BYTES / 1e6:,.0f} MB.",
                "Choose “split into several batches”, or cut the file.",
            )
        )
    problems = [problem for result in used for problem in result.problems] + cross
    problems.sort(key=lambda problem: problem.line or 0)
    report.problems = (extra + problems)[:FIRST_PROBLEMS]
    report.problem_count = sum(r.problem_count for r in used) + len(cross) + len(extra)
    paths = [result.report_path for result in used if result.report_path]
    if paths and (cross or extra):
        paths.append(_problem_rows_file(extra + cross, str(Path(paths[0]).parent)))
    return Merged(report, used, dropped, parts_of, offsets, paths)


def _place(
    used: list[SegmentResult], dropped: list[set[int]]
) -> tuple[list[array], list[array], Splitter]:
    """Each kept request's batch and offset in that batch's body, in file order. A file that
    fits one batch (nearly every file) is placed with a running sum, in C."""
    splitter = Splitter()
    lengths = [result.accepted.lengths for result in used]
    total = sum(len(each) for each in lengths) - sum(len(drop) for drop in dropped)
    size = sum(sum(each) for each in lengths) + total * len(SEPARATOR)
    parts_of: list[array] = []
    offsets: list[array] = []
    if (
        not any(dropped)
        and total <= splitter.max_requests
        and (size + len(BODY_HEAD) + len(BODY_TAIL) <= splitter.max_bytes)
    ):
        start = len(BODY_HEAD)
        for each in lengths:
            steps = map(add, each, repeat(len(SEPARATOR)))
            running = array("q", accumulate(steps, initial=start))

            start = running.pop()
            offsets.append(running)
            parts_of.append(array("l", [0]) * len(each))
        if total:
            splitter.parts.append(
                Part(requests=total, bytes=size + len(BODY_HEAD) + len(BODY_TAIL))
            )
        return parts_of, offsets, splitter
    positions: dict[int, int] = {}
    for each, drop in zip(lengths, dropped, strict=True):
        part_list = array("l", [-1]) * len(each)
        offset_list = array("q", [0]) * len(each)
        for position, length in enumerate(each):
            if position in drop:
                continue
            part = splitter.place(length)
            offset = positions.get(part, len(BODY_HEAD))
            part_list[position] = part
            offset_list[position] = offset
            positions[part] = offset + length + len(SEPARATOR)
        parts_of.append(part_list)
        offsets.append(offset_list)
    return parts_of, offsets, splitter


def _remove_from_estimate(
    estimate: Estimate, used: list[SegmentResult], dropped: list[set[int]]
) -> None:
    """Take the requests found to be duplicates across segments out of the estimate again; their
    bytes are read back from the segments' bodies (or not at all when none were kept)."""
    for result, drop in zip(used, dropped, strict=True):
        if not drop or not result.accepted.body_path:
            continue
        starts = result.accepted.offsets()
        with open(result.accepted.body_path, "rb") as body:
            for position in drop:
                body.seek(starts[position])
                raw = body.read(result.accepted.lengths[position])
                estimate.remove(orjson.loads(raw)["params"])


def _problem_rows_file(problems: list[Problem], directory: str) -> str:
    with tempfile.NamedTemporaryFile(
        dir=directory, prefix="check-", suffix=".problems.csv", delete=False
    ) as handle:
        log = ProblemLog(handle, header=False)
        for problem in problems:
            log.add(problem)
        log.detach()
        return handle.name


def index_rows(merged: Merged, submission_id: int) -> Iterator[tuple[Any, ...]]:
    """(submission, part, custom_id, line, offset, length) of every kept request, in file
    order: a zip of the segments' arrays, so 100,000 rows cost no Python loop."""
    for result, drop, parts_of, offsets in zip(
        merged.segments, merged.dropped, merged.parts_of, merged.offsets, strict=True
    ):
        accepted = result.accepted
        columns = (parts_of, accepted.custom_ids, accepted.lines, offsets, accepted.lengths)
        rows: Iterator[tuple[Any, ...]] = zip(repeat(submission_id), *columns, strict=False)
        if drop:
            rows = (row for position, row in enumerate(rows) if position not in drop)
        yield from rows
