"""The file check under Hypothesis: whatever its lines hold (valid requests of many shapes, and
the same changed one way each: nesting thousands of levels deep in any field, huge numbers,
NULs, halves of surrogate pairs, odd unicode, wrong types, big strings, broken shapes, random
damage), checking a file raises nothing, every bad line gets a problem with its line number
that says what is wrong, and the lines after a bad one are still checked.

The lines and the judge are bench/intake_cases.py's, which bench/fuzz_intake.py runs by the
million; here a few hundred files, the same ones every run (derandomized, no example database).
"""

import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from batches.intake.checking import check_file, discard
from batches.intake.command_line import local_ranges
from bench.intake_cases import KINDS, VALID, Maker, found, judge
from emulator.catalog import MODELS

WORKSPACE_MODELS = [{"id": model.id, "max_tokens": model.max_tokens} for model in MODELS]
# Big strings a few tens of kilobytes here (the bench makes them hundreds): the suite stays fast.
BIG = 30_000
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def checked(content: bytes, fmt: str, models, csv_options=None):
    """What check_file (as validatebatch and the background check run it) finds in `content`."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"upload.{fmt}"
        path.write_bytes(content)
        merged = check_file(
            local_ranges(path),
            len(content),
            fmt,
            models=models,
            csv_options=csv_options,
            report_dir=directory,
        )
        try:
            return found(merged)
        finally:
            discard(merged)


@FUZZ
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    with_models=st.booleans(),
)
def test_it_survives_any_line_and_names_every_bad_one_on_its_line(kinds, seed, with_models):
    models = WORKSPACE_MODELS if with_models else None
    maker = Maker(random.Random(seed), models, big=BIG)
    cases = maker.file([*kinds, "valid"])  # a good line last: it must still be checked
    content = b"\n".join(case.raw for case in cases) + b"\n"
    accepted, problems = checked(content, "jsonl", models)
    verdict = judge(list(enumerate(cases, 1)), accepted, problems)
    assert (verdict.crashes, verdict.masked, verdict.false_alarms) == (0, 0, 0), verdict.examples
    assert cases[-1].verdict == VALID and len(cases) in accepted


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 30), seed=st.integers(0, 2**32 - 1), with_models=st.booleans())
def test_it_survives_any_csv_row_and_names_every_bad_one_on_its_line(rows, seed, with_models):
    models = WORKSPACE_MODELS if with_models else None
    maker = Maker(random.Random(seed), models, big=BIG)
    content, numbered, options = maker.csv_file(rows)
    accepted, problems = checked(content, "csv", models, options)
    verdict = judge(numbered, accepted, problems)
    assert (verdict.crashes, verdict.masked, verdict.false_alarms) == (0, 0, 0), verdict.examples
