"""Writing many rows at once, at the speed the database offers: PostgreSQL's COPY, and one
prepared statement for many rows on SQLite. Rows are plain tuples, never model instances, so
100,000 of them cost what the database spends, not what building objects costs."""

from collections.abc import Iterable
from itertools import islice

from django.db import connection
from django.db.models import Field, Model

CHUNK = 20_000


def _column(model: type[Model], name: str) -> str:
    """The column of one of the model's fields: a concrete one, as rows are written to."""
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None, f"{name} has no column"
    return field.column


def insert_rows(
    model: type[Model], fields: list[str], rows: Iterable[tuple], *, plain: bool = False
) -> int:
    """INSERT `rows` (tuples in the order of `fields`) into `model`'s table; returns the count.

    `plain`: every value is a number or a string without tab, newline, carriage return or
    backslash (the caller knows, e.g. validated ids), so rows go to COPY without escaping.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(_column(model, name)) for name in fields)
    count = 0
    rows = iter(rows)
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        line = "\t".join(["{}"] * len(fields)) + "\n"
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            while chunk := list(islice(rows, CHUNK)):
                if plain:
                    text = "".join(line.format(*row) for row in chunk)
                    copy.write(text)
                else:
                    for row in chunk:
                        copy.write_row(row)
                count += len(chunk)
        return count
    # SQLite: the DB-API cursor itself, without Django's per-row parameter handling (the
    # connection is Django's own, so this runs inside the caller's transaction).
    marks = ", ".join(["?"] * len(fields))
    statement = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 (names are ours)
    raw = connection.connection.cursor()
    try:
        while chunk := list(islice(rows, CHUNK)):
            raw.executemany(statement, chunk)
            count += len(chunk)
    finally:
        raw.close()
    return count


def upsert_rows(
    model: type[Model],
    fields: list[str],
    rows: list[tuple],
    *,
    unique: list[str],
    update: list[str],
) -> int:
    """INSERT `rows`, or UPDATE `update` of the row already there with the same `unique` values.

    PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT, so the
    rows cost what COPY costs, not one bound parameter each. SQLite: one prepared INSERT ... ON
    CONFLICT for every row. Values go in as they are (JSON already dumped to text); the caller
    runs this inside a transaction when the rows must land together.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    column = {name: quote(_column(model, name)) for name in [*fields, *unique, *update]}
    columns = ", ".join(column[name] for name in fields)
    conflict = ", ".join(column[name] for name in unique)
    assignments = ", ".join(f"{column[name]} = EXCLUDED.{column[name]}" for name in update)
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        scratch = quote(f"upsert_{meta.db_table}")
        casts = ", ".join(
            f"{column[name]}::jsonb" if meta.get_field(name).get_internal_type() == "JSONField"
            else column[name]
            for name in fields
        )  # fmt: skip
        definitions = ", ".join(
            f"{column[name]} text" if meta.get_field(name).get_internal_type() == "JSONField"
            else f"{column[name]} {meta.get_field(name).db_type(connection)}"
            for name in fields
        )  # fmt: skip
        with connection.cursor() as cursor:
            # One scratch table per connection, emptied for every call: no catalog churn per
            # chunk. Its JSON columns are text, so COPY takes the dumped JSON as it is.
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {scratch} ({definitions})")
            cursor.execute(f"TRUNCATE {scratch}")
            with cursor.copy(f"COPY {scratch} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)  # psycopg escapes in C: 14x a str.translate per value
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {casts} FROM {scratch} "  # noqa: S608
                f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}"
            )
        return len(rows)
    marks = ", ".join(["?"] * len(fields))
    statement = (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608 (names are ours)
        f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}"
    )
    raw = connection.connection.cursor()
    try:
        raw.executemany(statement, rows)
    finally:
        raw.close()
    return len(rows)
