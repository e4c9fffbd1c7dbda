"""The rules for every CSV file the dashboard writes, so each one opens safely in a spreadsheet.

- A text cell that a spreadsheet would read as a formula (it begins with =, +, -, @, a tab or a
  carriage return: OWASP's list for CSV injection) gets a leading apostrophe, which spreadsheets
  show as plain text and hide, so the text stays readable and nothing runs.
- Files begin with a UTF-8 byte order mark, so Excel reads accents right instead of guessing a
  legacy code page.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"
BOM_BYTES = BOM.encode("utf-8")


def safe_cell(value):
    """A cell as written to a CSV file: text that would start a formula is made plain text.
    Numbers are left as they are (a negative count is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def needs_neutralising(cells) -> bool:
    return any(isinstance(cell, str) and cell.startswith(FORMULA_STARTS) for cell in cells)


def safe_row(cells) -> list:
    return [safe_cell(cell) for cell in cells]
