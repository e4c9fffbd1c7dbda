import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from batches import intake
from batches.models import Workspace
from batches.submissions import detect_format


def add_csv_arguments(parser):
    group = parser.add_argument_group("CSV files")
    group.add_argument("--template", help="the prompt, with {column} placeholders")
    group.add_argument("--id-column", default="", help="the column with each row's custom_id")
    group.add_argument("--model", help="the model of every request")
    group.add_argument("--max-tokens", type=int, help="max_tokens of every request")
    group.add_argument("--system", default="", help="a system prompt")
    group.add_argument("--temperature", type=float, default=None)


def csv_options_from(options) -> intake.CsvOptions:
    missing = [
        flag
        for flag, value in (
            ("--template", options["template"]),
            ("--model", options["model"]),
            ("--max-tokens", options["max_tokens"]),
        )
        if not value
    ]
    if missing:
        raise CommandError(f"A CSV file needs {', '.join(missing)}.")
    return intake.CsvOptions(
        template=options["template"],
        model=options["model"],
        max_tokens=options["max_tokens"],
        id_column=options["id_column"],
        system=options["system"],
        temperature=options["temperature"],
    )


def print_report(out, report: intake.Report, path: Path) -> None:
    for problem in report.problems:
        where = f"line {problem.line}" if problem.line else "file"
        field = f" [{problem.field}]" if problem.field else ""
        out.write(f"{path.name}: {where}{field}: {problem.message} Fix: {problem.fix}")
    if report.problem_count > len(report.problems):
        out.write(f"… and {report.problem_count - len(report.problems):,} more problems.")
    for note in report.notes:
        out.write(f"Note: {note}")
    if report.ok:
        parts = len(report.parts)
        out.write(
            f"{report.request_count:,} requests ready ({report.request_bytes / 1e6:,.1f} MB"
            + (f", in {parts} batches" if parts > 1 else "")
            + f"); estimated input cost ${report.estimate['input_cost']}, "
            f"output at most ${report.estimate['max_output_cost']} at the batch price."
        )
    else:
        out.write(f"{report.request_count:,} requests, {report.problem_count:,} problems.")


class Command(BaseCommand):
    help = "Check a JSONL or CSV file of batch requests; exit 1 if it has any problem."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--workspace", help="check model names against this workspace's model list"
        )
        parser.add_argument(
            "--refuse-oversize",
            action="store_true",
            help="report a file over one batch's limits instead of splitting it",
        )
        add_csv_arguments(parser)

    def handle(self, file, workspace, refuse_oversize, **options):
        report = validate(file, workspace, refuse_oversize, options)
        print_report(self.stdout, report, file)
        if not report.ok:
            sys.exit(1)


def validate(file: Path, workspace_name, refuse_oversize, options) -> intake.Report:
    if not file.is_file():
        raise CommandError(f"{file} is not a file.")
    fmt = detect_format(file.name)
    if fmt is None:
        raise CommandError(f"{file.name} is neither .jsonl nor .csv (optionally .gz).")
    models = None
    if workspace_name:
        workspace = Workspace.objects.filter(name=workspace_name).first()
        if workspace is None:
            raise CommandError(f"No workspace named {workspace_name!r}.")
        models = workspace.models_available or None
    return intake.validate_file(
        file,
        fmt,
        models=models,
        csv_options=csv_options_from(options) if fmt == "csv" else None,
        oversize="refuse" if refuse_oversize else "split",
    )
