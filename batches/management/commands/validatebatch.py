import gc
import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from batches.intake.checking import Report, check_file
from batches.intake.reading import detect_format
from batches.intake.templating import CsvOptions
from dashboard.storage import LimitedReader


def add_csv_arguments(parser):
    group = parser.add_argument_group("CSV files")
    group.add_argument("--template", help="the prompt, with {column} placeholders")
    group.add_argument("--id-column", default="", help="the column with each row's custom_id")
    group.add_argument("--model", help="the model of every request")
    group.add_argument("--max-tokens", type=int, help="max_tokens of every request")
    group.add_argument("--system", default="", help="a system prompt")
    group.add_argument("--temperature", type=float, default=None)


def csv_options_from(options) -> CsvOptions:
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
    return CsvOptions(
        template=options["template"],
        model=options["model"],
        max_tokens=options["max_tokens"],
        id_column=options["id_column"],
        system=options["system"],
        temperature=options["temperature"],
    )


def print_problems(out, name: str, problems: list[dict], count: int) -> None:
    for problem in problems:
        where = f"line {problem['line']}" if problem["line"] else "file"
        field = f" [{problem['field']}]" if problem["field"] else ""
        out.write(f"{name}: {where}{field}: {problem['message']} Fix: {problem['fix']}")
    if count > len(problems):
        out.write(f"… and {count - len(problems):,} more problems.")


def print_summary(out, *, ok: bool, requests: int, size: int, parts: int, estimate, problems: int):
    if ok:
        out.write(
            f"{requests:,} requests ready ({size / 1e6:,.1f} MB"
            + (f", in {parts} batches" if parts > 1 else "")
            + f"); estimated input cost ${estimate['input_cost']}, "
            f"output at most ${estimate['max_output_cost']} at the batch price."
        )
    else:
        out.write(f"{requests:,} requests, {problems:,} problems.")


def print_report(out, report: Report, path: Path) -> None:
    print_problems(out, path.name, [p.as_dict() for p in report.problems], report.problem_count)
    for note in report.notes:
        out.write(f"Note: {note}")
    print_summary(
        out,
        ok=report.ok,
        requests=report.request_count,
        size=report.request_bytes,
        parts=len(report.parts),
        estimate=report.estimate,
        problems=report.problem_count,
    )


def local_ranges(path: Path):
    """Byte ranges of a file on this machine, as the checker reads any stored file."""

    def open_range(start: int, end: int | None):
        handle = path.open("rb")
        handle.seek(start)
        return LimitedReader(handle, None if end is None else end - start)

    return open_range


class Command(BaseCommand):
    help = "Check a JSONL or CSV file of batch requests; exit 1 if it has any problem."
    # A file check needs nothing the system checks look at; skipping them starts it sooner.
    requires_system_checks: list[str] = []

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
        code = 0 if report.ok else 1
        if getattr(self, "_called_from_command_line", False):
            # The check leaves nothing to clean up (no file, no connection written to), so the
            # process ends here rather than spend a tenth of a second freeing what it read.
            self.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        if code:
            sys.exit(code)


def validate(file: Path, workspace_name, refuse_oversize, options) -> Report:
    if not file.is_file():
        raise CommandError(f"{file} is not a file.")
    fmt = detect_format(file.name)
    if fmt is None:
        raise CommandError(f"{file.name} is neither .jsonl nor .csv (optionally .gz).")
    models = None
    if workspace_name:
        from batches.models import Workspace

        workspace = Workspace.objects.filter(name=workspace_name).first()
        if workspace is None:
            raise CommandError(f"No workspace named {workspace_name!r}.")
        models = workspace.models_available or None
    csv_options = csv_options_from(options) if fmt == "csv" else None
    # What Django and the schema built at start-up lives as long as the process: keep the
    # collector from walking it again and again while the check allocates.
    gc.freeze()
    merged = check_file(
        local_ranges(file),
        file.stat().st_size,
        fmt,
        models=models,
        csv_options=csv_options,
        oversize="refuse" if refuse_oversize else "split",
        processes=settings.CHECK_PROCESSES,
    )
    return merged.report
