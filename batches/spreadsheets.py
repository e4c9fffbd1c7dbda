"""The rules for every CSV file the dashboard writes, so each one opens safely in a spreadsheet.

- A text cell that a spreadsheet would read as a formula (it begins with =, +, -, @, a tab or a
  carriage return: OWASP's list for CSV injection; or with their full-width forms, which some
  spreadsheets take for the same; or with any of these after leading white space, which
  spreadsheets skip) gets a leading apostrophe, which spreadsheets show as plain text and hide,
  so the text stays readable and nothing runs.
- Files begin with a UTF-8 byte order mark, so Excel reads accents right instead of guessing a
  legacy code page.
"""

from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# The full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20) that spreadsheets with East Asian input
# read as the ASCII ones; these and the ASCII ones count after leading white space too.
FORMULA_AFTER_SPACE = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Every character Python counts as white space (spaces, newlines, no-break and ideographic
# spaces), named once so the database's version of the rule (batches.downloads) skips the same.
LEADING_SPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())


def _formula_like(value: str) -> bool:
    return value.startswith(FORMULA_STARTS) or value.lstrip(LEADING_SPACE).startswith(
        FORMULA_AFTER_SPACE
    )


BOM = "\ufeff"
BOM_BYTES = BOM.encode("utf-8")


def safe_cell[T](value: T) -> T | str:
    """A cell as written to a CSV file: text that would start a formula is made plain text.
    Numbers are left as they are (a negative count is a number, not a formula)."""
    if isinstance(value, str) and _formula_like(value):
        return "'" + value
    return value


def needs_neutralising(cells: Iterable[object]) -> bool:
    return any(isinstance(cell, str) and _formula_like(cell) for cell in cells)


def safe_row[T](cells: Iterable[T]) -> list[T | str]:
    return [safe_cell(cell) for cell in cells]
