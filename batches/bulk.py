"""Writing many rows at once, at the speed the database offers: PostgreSQL's COPY, and one
prepared statement for many rows elsewhere. Rows are plain tuples, never model instances, so
100,000 of them cost what the database spends, not what building objects costs."""

from collections.abc import Iterable
from itertools import islice

from django.db import connection

CHUNK = 10_000


def insert_rows(model, fields: list[str], rows: Iterable[tuple]) -> int:
    """INSERT `rows` (tuples in the order of `fields`) into `model`'s table; returns the count."""
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(meta.get_field(name).column) for name in fields)
    count = 0
    rows = iter(rows)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            return count
        marks = ", ".join(["%s"] * len(fields))
        statement = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 (names are ours)
        while chunk := list(islice(rows, CHUNK)):
            cursor.executemany(statement, chunk)
            count += len(chunk)
    return count
