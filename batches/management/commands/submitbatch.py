import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from batches import labels, mirror, submissions
from batches.client import ApiClient, ApiError
from batches.intake import job
from batches.intake.command_line import (
    UsageError,
    add_csv_arguments,
    csv_options_from,
    print_problems,
    print_summary,
)
from batches.intake.reading import detect_format
from batches.models import Submission, Workspace
from batches.operations import Refused
from batches.operations import uploads as upload_operations
from foundations import betas


class Command(BaseCommand):
    help = "Check a file and, when it has no problem, submit it as one or more batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--label",
            action="append",
            default=[],
            help="a label for its batches (repeat for several)",
        )
        parser.add_argument(
            "--beta",
            action="append",
            default=[],
            help="a beta feature for the create call's anthropic-beta header (repeatable), "
            "e.g. output-128k-2025-02-19",
        )
        parser.add_argument("--user", help="the username recorded as the submitter")
        parser.add_argument(
            "--over-budget",
            action="store_true",
            help="confirm going over what is left of the workspace's monthly budget (as a "
            "workspace admin confirms it on the page; refused when --user is not an admin)",
        )
        add_csv_arguments(parser)

    def handle(
        self,
        file: Path,
        workspace: str,
        name: str,
        user: str | None,
        over_budget: bool,
        **options: Any,
    ) -> None:
        target = Workspace.objects.filter(name=workspace).first()
        if target is None:
            raise CommandError(f"No workspace named {workspace!r}.")
        if not file.is_file():
            raise CommandError(f"{file} is not a file.")
        fmt = detect_format(file.name)
        if fmt is None:
            raise CommandError(f"{file.name} is neither .jsonl nor .csv (optionally .gz).")
        submitter = None
        if user:
            submitter = get_user_model().objects.filter(username=user).first()
            if submitter is None:
                raise CommandError(f"No user named {user!r}.")
        if not target.models_available:
            try:
                with ApiClient.for_workspace(target, max_attempts=2, timeout=10) as client:
                    mirror.refresh_models(target, client, timezone.now())
                target.refresh_from_db()
            except ApiError as error:
                self.stderr.write(f"Could not read the model list: {error}")
        try:
            csv_options = csv_options_from(options).as_dict() if fmt == "csv" else None
            chosen_labels = labels.parse(options["label"])
            chosen_betas = betas.parse(options["beta"])
        except (UsageError, labels.LabelError, betas.BetaError) as error:
            raise CommandError(str(error)) from None
        with file.open("rb") as handle:
            upload = File(handle, name=file.name)
            upload.size = file.stat().st_size
            submission = upload_operations.upload(
                target,
                submitter,
                upload,
                queue=False,
                name=name,
                csv_options=csv_options,
                labels=chosen_labels,
                betas=chosen_betas,
            )
        # The check runs here, in the foreground, as the worker would run it.
        job.run_check(submission.pk)
        submission.refresh_from_db()
        print_problems(self.stdout, file.name, submission.problems, submission.problem_count)
        for note in submission.notes:
            self.stdout.write(f"Note: {note}")
        ok = submission.state == Submission.State.READY
        print_summary(
            self.stdout,
            ok=ok,
            requests=submission.request_count,
            size=submission.request_bytes,
            parts=submission.parts.count(),
            estimate=submission.estimate,
            problems=submission.problem_count,
        )
        if not ok:
            sys.exit(1)
        try:
            upload_operations.submit(
                submission, submitter, confirm_over_budget=over_budget, queue=False
            )
        except (Refused, PermissionDenied) as refusal:
            raise CommandError(str(refusal)) from None
        submission = submissions.create_batches(submission.pk)
        if submission.state != Submission.State.SUBMITTED:
            raise CommandError(f"Submitting failed: {submission.submit_error}")
        for batch in submission.batches.order_by("submission_part__index"):
            self.stdout.write(f"Created {batch.api_id} ({batch.total:,} requests): {batch.name}")
