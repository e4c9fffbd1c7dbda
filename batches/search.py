"""The results explorer's text search index: each result's custom_id, answer and error message
in one text (ResultText), with a trigram index on PostgreSQL.

It is written once a batch's results are complete, by a task of its own after ingestion, in one
INSERT ... SELECT inside the database: keeping a trigram index up to date while results stream in
made ingestion 1.2x to 1.4x slower (bench/bench_ingestion.py). Until it is written, and on SQLite,
the search reads the batch's results (batches.selectors.search_results).
"""

from django.db import connection, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql.compiler import SQLCompiler

from batches.models import Batch, Result, ResultText

# A lookup's SQL and its parameters, as Django's compiler takes them.
SqlAndParams = tuple[str, tuple[str | int, ...]]

# Searches shorter than this cannot use trigrams; they read the batch instead.
MIN_INDEXED_LENGTH = 3


@models.TextField.register_lookup
class ILike(models.Lookup):
    """`haystack__ilike="text"`: PostgreSQL's ILIKE '%text%', which a trigram index answers
    (Django's icontains writes UPPER(...) LIKE UPPER(...), which it does not)."""

    lookup_name = "ilike"

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> SqlAndParams:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs}", (*lhs_params, *rhs_params)

    def get_db_prep_lookup(self, value: str | int, connection: BaseDatabaseWrapper) -> SqlAndParams:
        # str(): what prep_for_like_query does first anyway (its type takes only text).
        return "%s", (f"%{connection.ops.prep_for_like_query(str(value))}%",)


def supported() -> bool:
    return connection.vendor == "postgresql"


def index_results(batch_pk: int) -> int:
    """Write the search text of a batch whose results are complete; returns how many rows. A
    batch re-ingested meanwhile is indexed again by the task that follows that ingestion."""
    if not supported():
        return 0
    ingested_at = (
        Batch.objects.filter(pk=batch_pk).values_list("results_ingested_at", flat=True).first()
    )
    if ingested_at is None:
        return 0
    text, result = ResultText._meta.db_table, Result._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {text} WHERE batch_id = %s", [batch_pk])  # noqa: S608
        cursor.execute(
            f"INSERT INTO {text} (result_id, batch_id, haystack) "  # noqa: S608
            f"SELECT id, batch_id, custom_id || ' ' || answer_text || ' ' || error_message "
            f"FROM {result} WHERE batch_id = %s ON CONFLICT DO NOTHING",
            [batch_pk],
        )
        written = cursor.rowcount
        Batch.objects.filter(pk=batch_pk, results_ingested_at=ingested_at).update(
            search_indexed_at=ingested_at
        )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {text}")
    return written


def is_indexed(batch: Batch) -> bool:
    return (
        supported()
        and batch.results_ingested_at is not None
        and batch.search_indexed_at == batch.results_ingested_at
    )
