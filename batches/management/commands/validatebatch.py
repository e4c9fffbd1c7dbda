"""`validatebatch`, through Django's management machinery: what `call_command` and `--workspace`
use. `manage.py validatebatch FILE` without --workspace starts faster through
`batches.intake.command_line`, which this command shares its arguments and output with."""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from batches.intake import command_line
from batches.intake.checking import Report


class Command(BaseCommand):
    help = command_line.HELP
    # A file check needs nothing the system checks look at; skipping them starts it sooner.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        command_line.add_arguments(parser)

    def handle(
        self, file: Path, workspace: str | None, refuse_oversize: bool, **options: Any
    ) -> None:
        report = validate(file, workspace, refuse_oversize, options)
        command_line.print_report(self.stdout, report, file)
        if not report.ok:
            sys.exit(1)


def validate(
    file: Path, workspace_name: str | None, refuse_oversize: bool, options: dict[str, Any]
) -> Report:
    models = None
    if workspace_name:
        from batches.models import Workspace

        workspace = Workspace.objects.filter(name=workspace_name).first()
        if workspace is None:
            raise CommandError(f"No workspace named {workspace_name!r}.")
        models = workspace.models_available or None
    try:
        return command_line.check(file, {**options, "refuse_oversize": refuse_oversize}, models)
    except command_line.UsageError as error:
        raise CommandError(str(error)) from None
    except Exception as error:  # as command_line.main: a sentence and exit 1, not a traceback
        raise CommandError(command_line.unforeseen_words(error)) from error
