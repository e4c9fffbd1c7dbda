"""A problem found in an upload, and the report that collects them."""

import csv
import io
from dataclasses import dataclass
from typing import IO

from batches.spreadsheets import safe_cell

# The page shows this many; the downloadable report has them all.
FIRST_PROBLEMS = 100
# bounds.MAX_DEPTH, which imports this module (a test keeps the two alike).
FIX_NESTING = "Flatten it: a request nests lists and objects at most 64 levels deep."
FIX_UTF8 = "Save the file as UTF-8 (in Excel: “CSV UTF-8”; in an editor: encoding UTF-8)."
REPORT_HEADER = ["line", "field", "problem", "how to fix it"]


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None  # the line (JSONL) or row (CSV); None for the whole file
    field: str
    message: str
    fix: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message, "fix": self.fix}


def without_nul(problem: Problem) -> Problem:
    """The problem with each NUL it quotes (a key of the file's, say) written as `\\u0000`, as the
    file wrote it: PostgreSQL keeps no NUL in text, so a report holding one could not be kept."""
    field, message, fix = (
        text.replace("\x00", "\\u0000") for text in (problem.field, problem.message, problem.fix)
    )
    return Problem(problem.line, field, message, fix)


class ProblemLog:
    """Counts every problem, keeps the first FIRST_PROBLEMS for the page, and writes all of them
    to `out` (a binary file) as CSV while they are found, so a huge report never sits in
    memory."""

    def __init__(self, out: IO[bytes] | None = None, *, header: bool = True) -> None:
        self.count = 0
        self.first: list[Problem] = []
        self._text = None
        self._writer = None
        if out is not None:
            self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            self._writer = csv.writer(self._text)
            if header:
                self._writer.writerow(REPORT_HEADER)

    def add(self, problem: Problem) -> None:
        if "\x00" in problem.field or "\x00" in problem.message or "\x00" in problem.fix:
            problem = without_nul(problem)
        self.count += 1
        if len(self.first) < FIRST_PROBLEMS:
            self.first.append(problem)
        if self._writer is not None:
            self._writer.writerow(
                [
                    problem.line or "",
                    safe_cell(problem.field),
                    safe_cell(problem.message),
                    safe_cell(problem.fix),
                ]
            )

    def detach(self) -> None:
        """Flush the report and give its binary file back to the caller (who closes it)."""
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = self._writer = None
