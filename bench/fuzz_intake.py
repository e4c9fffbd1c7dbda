"""Fuzz the file check: at least CASES generated lines, checked as whole files through
`check_file` (what `manage.py validatebatch` and the background check run, with the project's
settings), each line held to what it should get.

    nice -n 10 .venv/bin/python bench/fuzz_intake.py [CASES] [--processes 2] [--lines 4000]
        [--seed 1]

The lines are made by bench/intake_cases.py (its docstring lists every kind of change made to
them): valid requests of many shapes, and the same changed one way each - nesting up to 5,000
levels in any field, huge numbers, NULs, halves of surrogate pairs, odd unicode, wrong types,
big strings, broken shapes, several changes at once, random damage, blank lines. Files of
`--lines` lines are checked one at a time in each of `--processes` processes (forked), every
other file against a workspace's model list and the rest without one; one file in twenty is a
CSV of a quarter as many rows checked through its template, and one JSONL file in ten is
checked in two segments at once by two processes (as a file of 16 MB and more is), so that the
segments' findings are put together as for a big file. Every problem is read from the check's
full report (not the page's first hundred) and every kept request from what the check kept.

It prints, as it goes and at the end, with the wall time:

- cases: lines (or CSV rows) checked;
- crashes: lines whose checking raised - an exception out of `check_file` (every line of that
  file counts); a line reported with the last defence's words ("could not be checked"; or the
  segment's, "could not be read to the end"); a line that got neither a problem nor
  acceptance, so was never checked; a problem holding a NUL, which PostgreSQL would refuse to
  store with the report;
- masked errors: a line the generator knows to be invalid that was reported valid; an invalid
  line none of whose problems says what is wrong - the words that line's change must be named
  with (NUL, surrogate, nested too deeply, largest integer the API takes...) and, where it
  changed a field, that field, an object holding it or a field inside it (for a `type` or
  `role`, any field of its object); "The request was refused." never counts; a problem without
  a line number (only "The file holds no requests." may have none);
- false alarms: a line the generator knows to be valid that was refused (or a blank line that
  was not passed over).

Then the count of each by kind of line, and the first few examples. Exit status 1 if there was
any crash or masked error.
"""

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from batches.intake.checking import check_file, discard  # noqa: E402
from batches.intake.command_line import local_ranges  # noqa: E402
from bench.intake_cases import KINDS, WEIGHTS, Case, Maker, Verdict, found, judge  # noqa: E402
from emulator.catalog import MODELS  # noqa: E402

WORKSPACE_MODELS = [{"id": model.id, "max_tokens": model.max_tokens} for model in MODELS]
PARALLEL_MIN_BYTES = settings.CHECK_PARALLEL_MIN_BYTES
CSV_EVERY = 20
SEGMENTS_EVERY = 10


def is_csv(index: int) -> bool:
    return index % CSV_EVERY == CSV_EVERY - 1


def cases_in(index: int, lines: int) -> int:
    return lines // 4 if is_csv(index) else lines


def check_one(seed: int, index: int, lines: int, directory: str) -> Verdict:
    """Make file `index`, check it, judge it."""
    rng = random.Random(seed * 1_000_003 + index)
    models = WORKSPACE_MODELS if index % 2 else None
    maker = Maker(rng, models)
    options = None
    if is_csv(index):
        content, numbered, options = maker.csv_file(cases_in(index, lines))
        fmt = "csv"
    else:
        cases: list[Case] = maker.file(rng.choices(KINDS, WEIGHTS, k=lines))
        content = b"\n".join(case.raw for case in cases) + b"\n"
        numbered = list(enumerate(cases, 1))
        fmt = "jsonl"
    path = Path(directory) / f"fuzz-{index}.{fmt}"
    path.write_bytes(content)
    segments = fmt == "jsonl" and index % SEGMENTS_EVERY == SEGMENTS_EVERY // 2
    settings.CHECK_PARALLEL_MIN_BYTES = 1 if segments else PARALLEL_MIN_BYTES
    try:
        merged = check_file(
            local_ranges(path),
            len(content),
            fmt,
            models=models,
            csv_options=options,
            report_dir=directory,
            processes=2 if segments else 1,
        )
    except Exception:
        verdict = Verdict(cases=len(numbered), crashes=len(numbered))
        verdict.examples.append(f"file {index} raised:\n{traceback.format_exc()}")
        return verdict
    finally:
        path.unlink()
    try:
        accepted, problems = found(merged)
    finally:
        discard(merged)
    return judge(numbered, accepted, problems)


def _work(job: tuple[int, int, int, str]) -> Verdict:
    return check_one(*job)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", type=int, nargs="?", default=100_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--lines", type=int, default=4000, help="lines in each file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    files, planned = 0, 0
    while planned < args.cases:
        planned += cases_in(files, args.lines)
        files += 1
    total = Verdict()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-intake-") as directory:
        jobs = [(args.seed, index, args.lines, directory) for index in range(files)]
        context = multiprocessing.get_context("fork")
        with context.Pool(args.processes) as pool:
            for done, verdict in enumerate(pool.imap_unordered(_work, jobs), 1):
                total.add(verdict)
                if done % 10 == 0 or done == files:
                    elapsed = time.monotonic() - started
                    print(
                        f"{done}/{files} files · {total.cases:,} cases · {total.crashes} crashes"
                        f" · {total.masked} masked · {total.false_alarms} false alarms"
                        f" · {elapsed:,.0f} s",
                        flush=True,
                    )
    elapsed = time.monotonic() - started
    print(f"\ncases: {total.cases:,}")
    print(f"crashes: {total.crashes:,}")
    print(f"masked errors: {total.masked:,}")
    print(f"false alarms: {total.false_alarms:,}")
    print(f"wall time: {elapsed:,.1f} s ({total.cases / elapsed:,.0f} cases a second)")
    for kind, count in sorted(total.by_kind.items()):
        print(f"  {kind}: {count:,}")
    for example in total.examples:
        print(example)
    return 1 if total.crashes or total.masked else 0


if __name__ == "__main__":
    sys.exit(main())
