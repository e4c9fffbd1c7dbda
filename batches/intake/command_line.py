"""`validatebatch` without Django's start-up: the file check from the shell.

Checking a file needs the project's settings (the caps) and intake's own modules, none of which
imports a model, so `manage.py validatebatch FILE` runs here without `django.setup()` or the
management machinery: a third of a second less, which is most of the command's time beside the
check itself (bench/bench_intake.py). Only `--workspace` (model names from the database) goes the
whole way, through the management command, which shares this module's arguments and output.
"""

import argparse
import gc
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batches.intake.checking import Report, check_file
from batches.intake.reading import detect_format
from batches.intake.templating import CsvOptions
from foundations.local_files import LimitedReader

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

HELP = "Check a JSONL or CSV file of batch requests; exit 1 if it has any problem."


class UsageError(Exception):
    """What the person typed cannot be checked; the message says why."""


def add_csv_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CSV files")
    group.add_argument("--template", help="the prompt, with {column} placeholders")
    group.add_argument("--id-column", default="", help="the column with each row's custom_id")
    group.add_argument("--model", help="the model of every request")
    group.add_argument("--max-tokens", type=int, help="max_tokens of every request")
    group.add_argument("--system", default="", help="a system prompt")
    group.add_argument("--temperature", type=float, default=None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument("--workspace", help="check model names against this workspace's model list")
    parser.add_argument(
        "--refuse-oversize",
        action="store_true",
        help="report a file over one batch's limits instead of splitting it",
    )
    add_csv_arguments(parser)


def csv_options_from(options: Mapping[str, Any]) -> CsvOptions:
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
        raise UsageError(f"A CSV file needs {', '.join(missing)}.")
    return CsvOptions(
        template=options["template"],
        model=options["model"],
        max_tokens=options["max_tokens"],
        id_column=options["id_column"],
        system=options["system"],
        temperature=options["temperature"],
    )


def print_problems(out: "SupportsWrite[str]", name: str, problems: list[dict], count: int) -> None:
    for problem in problems:
        where = f"line {problem['line']}" if problem["line"] else "file"
        field = f" [{problem['field']}]" if problem["field"] else ""
        out.write(f"{name}: {where}{field}: {problem['message']} Fix: {problem['fix']}\n")
    if count > len(problems):
        out.write(f"… and {count - len(problems):,} more problems.\n")


def print_summary(
    out: "SupportsWrite[str]",
    *,
    ok: bool,
    requests: int,
    size: int,
    parts: int,
    estimate: dict,
    problems: int,
) -> None:
    if ok:
        out.write(
            f"{requests:,} request{'' if requests == 1 else 's'} ready ({size / 1e6:,.1f} MB"
            + (f", in {parts} batches" if parts > 1 else "")
            + f"); estimated input cost ${estimate['input_cost']}, "
            f"output at most ${estimate['max_output_cost']} at the batch price.\n"
        )
    else:
        out.write(f"{requests:,} requests, {problems:,} problems.\n")


def print_report(out: "SupportsWrite[str]", report: Report, path: Path) -> None:
    print_problems(out, path.name, [p.as_dict() for p in report.problems], report.problem_count)
    for note in report.notes:
        out.write(f"Note: {note}\n")
    print_summary(
        out,
        ok=report.ok,
        requests=report.request_count,
        size=report.request_bytes,
        parts=len(report.parts),
        estimate=report.estimate,
        problems=report.problem_count,
    )


def local_ranges(path: Path) -> Callable[[int, int | None], LimitedReader]:
    """Byte ranges of a file on this machine, as the checker reads any stored file."""

    def open_range(start: int, end: int | None) -> LimitedReader:
        handle = path.open("rb")
        handle.seek(start)
        return LimitedReader(handle, None if end is None else end - start)

    return open_range


def unforeseen_words(error: Exception) -> str:
    return (
        f"The file could not be checked ({type(error).__name__}: {str(error)[:200]}); "
        "please report this."
    )


def check(file: Path, options: Mapping[str, Any], models: list[dict] | None = None) -> Report:
    from django.conf import settings

    if not file.is_file():
        raise UsageError(f"{file} is not a file.")
    fmt = detect_format(file.name)
    if fmt is None:
        raise UsageError(f"{file.name} is neither .jsonl nor .csv (optionally .gz).")
    csv_options = csv_options_from(options) if fmt == "csv" else None
    # What was built at start-up lives as long as the process: keep the collector from walking
    # it again and again while the check allocates.
    gc.freeze()
    merged = check_file(
        local_ranges(file),
        file.stat().st_size,
        fmt,
        models=models,
        csv_options=csv_options,
        oversize="refuse" if options["refuse_oversize"] else "split",
        processes=settings.CHECK_PROCESSES,
    )
    return merged.report


# Django's own options of every command (and --workspace, which needs the database): with any of
# them the command goes the whole way, through Django's machinery.
DJANGO_OPTIONS = ("--workspace", "--settings", "--pythonpath", "--traceback", "--no-color",
                  "--force-color", "--skip-checks", "--verbosity", "-v")  # fmt: skip


def wants_the_database(argv: list[str]) -> bool:
    """Whether these arguments need the whole of Django (a workspace's models, or one of
    Django's own options)."""
    return any(arg.split("=", 1)[0] in DJANGO_OPTIONS or arg.startswith("-v") for arg in argv)


def main(argv: list[str]) -> None:
    """`manage.py validatebatch ...` without --workspace. Ends the process: 0 when the file is
    ready, 1 when it has problems or cannot be checked, 2 for a usage error (argparse's)."""
    # No abbreviations: `--works X` must not pass for --workspace and skip the model check.
    parser = argparse.ArgumentParser(
        prog="manage.py validatebatch", description=HELP, allow_abbrev=False
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    if options["workspace"]:
        raise RuntimeError("--workspace goes through the management command.")  # see manage.py
    try:
        report = check(options["file"], options)
    except UsageError as error:
        sys.stderr.write(f"CommandError: {error}\n")
        sys.exit(1)
    except Exception as error:
        # Every line's problems are caught where they are found (intake.bounds, and the last
        # defence of Check._unforeseen); this is for what is left, such as a checking process
        # killed for want of memory: a sentence, and exit 1, not a traceback.
        sys.stderr.write(f"CommandError: {unforeseen_words(error)}\n")
        sys.exit(1)
    print_report(sys.stdout, report, options["file"])
    # The check leaves nothing to clean up (no file, no connection written to), so the process
    # ends here rather than spend a tenth of a second freeing what it read.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if report.ok else 1)
