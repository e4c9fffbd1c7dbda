"""Checking a stored submission in the background, with progress, a stop button and recovery.

1. `request_check` moves an upload to `checking` (once, with a conditional update); the caller
   enqueues the task after the commit.
2. `run_check` (the task's body) claims the submission with a lease it renews at every progress
   report (about twice a second), reads the upload from storage once, and stores what Submit
   needs: each batch's create body, where each request sits in it, and the problem report.
   Nothing is final until it is complete: the outcome is written in one guarded update at the
   end, while the claim still holds.
3. A check whose worker died stops renewing; `Submission.objects.checks_to_resume` finds it once
   the lease lapses and the beat hands it out again, from the start.
"""

import logging
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.files.storage import Storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from batches import bulk
from batches.claims import Claim
from batches.intake.bounds import MAX_DEPTH, depth
from batches.intake.checking import (
    CheckStopped,
    Merged,
    check_file,
    compose_bodies,
    discard,
    index_rows,
)
from batches.intake.estimating import request_tokens
from batches.intake.problems import REPORT_HEADER, Problem
from batches.intake.templating import CsvOptions
from batches.models import BatchRequest, Submission, SubmissionPart
from batches.pricing import standard_cost_at_most
from foundations import storage
from foundations.betas import output_limit
from foundations.local_files import LimitedReader, scratch_dir
from foundations.storage import LocalFile, sweep_scratch

logger = logging.getLogger(__name__)

PROGRESS_FIELDS = ("check_lines", "check_bytes", "check_requests", "check_problems")
# "Try first" sends at most this many requests at once (batches.trials).
MAX_TRIES = 10


def request_check(submission: Submission) -> bool:
    """Move an editable submission to `checking`; False when it is not editable (submitted
    already, or checking). The caller enqueues `tasks.check_submission` after the commit."""
    changed = Submission.objects.filter(
        pk=submission.pk, state__in=[*Submission.EDITABLE, Submission.State.CHECKING]
    ).exclude(state=Submission.State.CHECKING, check_claimed_until__gte=timezone.now())
    return (
        changed.update(
            state=Submission.State.CHECKING,
            check_requested_at=timezone.now(),
            check_started_at=None,
            check_claimed_until=None,
            check_attempts=0,
            check_stop_requested=False,
            **dict.fromkeys(PROGRESS_FIELDS, 0),
        )
        == 1
    )


def request_stop(submission: Submission) -> bool:
    """Ask a running check to stop: it does at its next progress report (within a second)."""
    return (
        Submission.objects.filter(pk=submission.pk, state=Submission.State.CHECKING).update(
            check_stop_requested=True
        )
        == 1
    )


def _open_range(name: str, backend: Storage) -> Callable[[int, int | None], LimitedReader]:
    def open_range(start: int, end: int | None) -> LimitedReader:
        return storage.stream(name, start, end, storage=backend)

    return open_range


def _with_betas(models: list[dict], betas: list[str]) -> list[dict] | None:
    """The workspace's models with the output limits the upload's betas allow (None: no model
    list is known, so none is checked)."""
    if not models:
        return None
    return [
        {**model, "max_tokens": output_limit(model["id"], model.get("max_tokens"), betas)}
        for model in models
    ]


def _forget_outputs(submission: Submission) -> None:
    """Remove what an earlier check of this submission stored (a rerun starts clean)."""
    for part in submission.parts.all():
        if part.body:
            part.body.delete(save=False)
    submission.parts.all().delete()
    BatchRequest.objects.filter(submission=submission).delete()
    Submission.objects.filter(pk=submission.pk).update(requests_indexed_at=None)
    if submission.report_file:
        submission.report_file.delete(save=False)


def _finish_without_reading(claim: Claim, submission: Submission, problem: Problem) -> None:
    claim.release(
        state=Submission.State.HAS_PROBLEMS,
        problem_count=1,
        problems=[problem.as_dict()],
        request_count=0,
        check_complete=False,
        validated_at=timezone.now(),
    )


def run_check(submission_pk: int) -> str:
    """The check task's body. Safe to run twice at once: the second finds the claim taken."""
    claim = Claim.take(
        Submission,
        submission_pk,
        "check_claimed_until",
        where=Q(state=Submission.State.CHECKING),
    )
    if claim is None:
        return "skipped"
    submission = Submission.objects.select_related("workspace").get(pk=submission_pk)
    attempts = submission.check_attempts + 1
    if attempts > Submission.MAX_CHECK_ATTEMPTS:
        _finish_without_reading(
            claim,
            submission,
            Problem(
                None,
                "",
                f"Checking this file stopped {Submission.MAX_CHECK_ATTEMPTS} times without "
                "finishing (the worker doing it was stopped).",
                "Try again later; if it keeps happening, split the file.",
            ),
        )
        return "gave up"
    claim.renew(
        check_attempts=attempts,
        check_started_at=timezone.now(),
        **dict.fromkeys(PROGRESS_FIELDS, 0),
    )
    _forget_outputs(submission)
    sweep_scratch()  # what a killed check left here

    def progress(lines: int, raw_bytes: int, requests: int, problems: int) -> bool:
        values = dict(zip(PROGRESS_FIELDS, (lines, raw_bytes, requests, problems), strict=True))
        if not claim.renew(**values):
            return False  # another worker took the check over: let it finish
        return not Submission.objects.filter(pk=submission_pk, check_stop_requested=True).exists()

    upload = submission.upload
    if upload.name is None:
        # A submission reaches `checking` only with its upload stored.
        raise RuntimeError(f"Submission {submission.pk} has no upload to check.")
    backend = upload.storage
    options = CsvOptions.from_dict(submission.csv_options) if submission.is_csv else None
    directory = str(scratch_dir())
    merged = None
    try:
        merged = check_file(
            _open_range(upload.name, backend),
            submission.upload_size,
            submission.source_format,
            models=_with_betas(submission.workspace.models_available, submission.betas),
            csv_options=options,
            oversize=submission.oversize,
            keep_bodies=True,
            report_dir=directory,
            progress=progress,
            processes=settings.CHECK_PROCESSES if getattr(backend, "cheap_ranges", False) else 1,
        )
        return _store(claim, submission, merged, directory)
    except CheckStopped:
        if Submission.objects.filter(pk=submission_pk, check_stop_requested=True).exists():
            claim.release(state=Submission.State.STOPPED, check_stop_requested=False)
            return "stopped"
        return "lost its claim"
    finally:
        if merged is not None:
            discard(merged)


def _store(claim: Claim, submission: Submission, merged: Merged, directory: str) -> str:
    """Keep the bodies, the request index and the report, then say how the check went."""
    report = merged.report
    parts: list[SubmissionPart] = []
    bodies = compose_bodies(merged, directory) if report.request_count else []
    try:
        for index, body in enumerate(bodies):
            part = SubmissionPart(
                submission=submission,
                index=index,
                request_count=body.requests,
                request_bytes=body.size,
            )
            part.body.save(f"part-{index + 1}.json", LocalFile(body.path, "body"), save=False)
            parts.append(part)
    finally:
        for body in bodies:
            Path(body.path).unlink(missing_ok=True)
    report_name = ""
    if report.problem_count:
        report_name = _store_report(submission, merged.report_paths, directory)
    fields = {
        "state": Submission.State.READY if report.ok else Submission.State.HAS_PROBLEMS,
        "request_count": report.request_count,
        "request_bytes": report.request_bytes,
        "problem_count": report.problem_count,
        "rejected_count": report.rejected_count,
        "check_complete": report.complete,
        "problems": [problem.as_dict() for problem in report.problems],
        "report_file": report_name,
        "models_used": report.models,
        "estimate": report.estimate,
        "preview": report.preview,
        "notes": report.notes,
        "check_lines": report.lines_read,
        "check_bytes": submission.upload_size,
        "check_requests": report.request_count,
        "check_problems": report.problem_count,
        "validated_at": timezone.now(),
    }
    with transaction.atomic():
        # Only while the claim holds: else a newer run owns the submission. A stop asked for
        # while the last lines were read still stops it.
        stop = claim.held().values_list("check_stop_requested", flat=True).first()
        if stop is None or stop:
            for part in parts:
                part.body.delete(save=False)
            if report_name:
                submission.report_file.storage.delete(report_name)
            if stop is None:
                return "lost its claim"
            claim.release(state=Submission.State.STOPPED, check_stop_requested=False)
            return "stopped"
        SubmissionPart.objects.bulk_create(parts)
        # The report is what the person waits for: it goes out now, with the batches' bodies,
        # so the page shows it and Submit can start at once.
        claim.renew(**fields)
    # Then, still under the claim (so no new check of the file can start and clear them), where
    # each request sits in its body: what the pages about results, resubmitting and the
    # downloads of valid and left-out lines need, later.
    with transaction.atomic():
        if claim.renew():
            bulk.insert_rows(
                BatchRequest,
                ["submission", "part", "custom_id", "line", "offset", "length"],
                index_rows(merged, submission.pk),
                plain=True,  # numbers, and custom_ids of letters, digits, _ and -
            )
            # What trying the first requests could cost, for the page to state before sending.
            first = first_requests(submission)
            claim.release(requests_indexed_at=timezone.now(), first_requests=first)
    return str(fields["state"])


def _store_report(submission: Submission, paths: list[str], directory: str) -> str:
    """The whole problem report as one CSV: a header, then every segment's rows in order."""
    import csv
    import tempfile

    from batches.spreadsheets import BOM

    with tempfile.NamedTemporaryFile(
        "w", dir=directory, suffix=".csv", delete=False, encoding="utf-8", newline=""
    ) as out:
        out.write(BOM)
        csv.writer(out).writerow(REPORT_HEADER)
        out.flush()
        for path in paths:
            with open(path, encoding="utf-8", newline="") as rows:
                shutil.copyfileobj(rows, out)
        name = out.name
    try:
        submission.report_file.save("problems.csv", LocalFile(name, "problems.csv"), save=False)
    finally:
        Path(name).unlink(missing_ok=True)
    stored = submission.report_file.name
    assert stored is not None  # FieldFile.save has just set it to the storage's name
    return stored


def try_bound(params: dict) -> tuple[str, int, Decimal | None]:
    """(model, max_tokens, the most expensive outcome sent on its own, at the standard price) of
    a checked request's params: its estimated input, then max_tokens of output."""
    model, max_tokens = params["model"], params["max_tokens"]
    if type(max_tokens) is not int or depth(params) > MAX_DEPTH:
        # Not a request today's check accepts (intake.bounds), so one stored before it held
        # lines to them: its cost is left unstated rather than worked out from it.
        return model, max_tokens, None
    tokens, _ = request_tokens(params)
    return model, max_tokens, standard_cost_at_most(model, tokens, max_tokens)


def first_requests(submission: Submission) -> list[dict]:
    """The first requests of an indexed upload, each with what trying it could cost: stored
    with the check, so the page states it before anything is sent (batches.trials)."""
    first = []
    for row in BatchRequest.objects.filter(submission=submission).order_by("line")[:MAX_TRIES]:
        model, max_tokens, bound = try_bound(row.load()["params"])
        first.append(
            {
                "custom_id": row.custom_id,
                "line": row.line,
                "model": model,
                "max_tokens": max_tokens,
                "cost_at_most": None if bound is None else str(bound),
            }
        )
    return first
