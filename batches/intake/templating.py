"""A CSV row and a prompt template into one request's `params`."""

import math
import string
from dataclasses import dataclass, fields

from batches.intake.bounds import MAX_INTEGER

ADVICE = (
    "Placeholders are plain column names in braces, like {review}; "
    "write {{ and }} for a literal brace."
)


def clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def guess_id_column(columns: list[str]) -> str:
    """The column that most likely names each row, from the header alone: `custom_id`, then
    `id`, then one whose name ends in "id" (`review_id`, `RowId`); "" when none does."""
    lowered = [
        (column, column.strip().lower().replace("-", "_").replace(" ", "_")) for column in columns
    ]
    for wanted in ("custom_id", "id"):
        for column, name in lowered:
            if name == wanted:
                return column
    for column, name in lowered:
        if name.endswith("_id") or column.strip().endswith(("Id", "ID")):
            return column
    return ""


@dataclass
class CsvOptions:
    template: str
    model: str
    max_tokens: int
    id_column: str = ""
    system: str = ""
    temperature: float | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "CsvOptions":
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def as_dict(self) -> dict:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def placeholders(self) -> list[str]:
        """The `{column}` names of the template; ValueError for a malformed one."""
        names = []
        try:
            for _, name, spec, conversion in string.Formatter().parse(self.template):
                if name is None:
                    continue
                if name == "" or spec or conversion:
                    raise ValueError(ADVICE)
                names.append(name)
        except ValueError as exc:
            if str(exc) == ADVICE:
                raise
            raise ValueError(f"The template has an unmatched brace ({exc}). {ADVICE}") from None
        return names

    def unusable(self) -> tuple[str, str, str] | None:
        """(field, what is wrong, how to fix it) when these options make no row a request the
        API takes (every row would be refused alike, or could not even be written as JSON: a
        max_tokens past bounds.MAX_INTEGER, a temperature that is not a finite number); None
        when they are fine. Neither the upload form nor `validatebatch --max-tokens` bounds
        max_tokens from above, and `validatebatch --temperature nan` is a float."""
        max_tokens = self.max_tokens
        if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_INTEGER:
            return (
                "max_tokens",
                f"max_tokens is {clip(repr(max_tokens))}; it must be a whole number from 1 to "
                f"{MAX_INTEGER:,}.",
                "Give max_tokens as the most output tokens a row may get, such as 1024.",
            )
        temperature = self.temperature
        if temperature is not None and (
            type(temperature) not in (int, float) or not math.isfinite(temperature)
        ):
            return (
                "temperature",
                f"temperature is {clip(repr(temperature))}, not a finite number.",
                "Give a temperature from 0 to 1, or none.",
            )
        return None

    def render(self, row: dict[str, str]) -> str:
        # Plain lookups only: never str.format, which would allow attribute access.
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.template):
            parts.append(literal)
            if name is not None:
                parts.append(row.get(name, ""))
        return "".join(parts)

    def params(self, prompt: str) -> dict:
        params: dict = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self.system:
            params["system"] = self.system
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params
