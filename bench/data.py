"""Rows for the benchmarks, made the same way by each script that needs them: a workspace's
worth of batches, and one batch's worth of results; and what a script that starts a server
needs: a free port, and the bench's database as a URL for that server.

Imported after `django.setup()`.
"""

import socket
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from batches.models import Batch, Result, Workspace


def fill_batches(workspace: Workspace, count: int) -> None:
    """`count` batches a minute apart, newest last, every thousandth still running (so the
    newest page has one), the rest ended with a few errors. Ids are `msgbatch_bench000000`..."""
    now = timezone.now()
    rows = []
    for n in range(count):
        created = now - timedelta(minutes=count - n)
        running = n % 1000 == 999
        rows.append(Batch(
            workspace=workspace, api_id=f"msgbatch_bench{n:06d}", name=f"Nightly run {n}",
            processing_status="in_progress" if running else "ended",
            processing=50 if running else 0, succeeded=950 if running else 990,
            errored=0 if running else 10, created_at=created,
            expires_at=created + timedelta(hours=24),
            ended_at=None if running else created + timedelta(minutes=30),
        ))  # fmt: skip
    Batch.objects.bulk_create(rows, batch_size=2000)


def fill_results(batch: Batch, count: int) -> None:
    """`count` results `req-000000`...: every tenth errored (two error types), the rest
    succeeded with a 260-character answer, every seventh stopped at max_tokens."""
    rows: list[Result] = []
    for n in range(count):
        if n % 10 == 0:
            kind = "invalid_request_error" if n % 20 == 0 else "overloaded_error"
            rows.append(Result(batch=batch, custom_id=f"req-{n:06d}", result_type="errored",
                               error_type=kind, error_message=f"Problem {n}"))  # fmt: skip
        else:
            text = f"Answer number {n}: the quick brown fox jumps over the lazy dog. " * 4
            rows.append(Result(
                batch=batch, custom_id=f"req-{n:06d}", result_type="succeeded",
                stop_reason="max_tokens" if n % 7 == 0 else "end_turn",
                model="claude-haiku-4-5", input_tokens=120, output_tokens=80,
                content=[{"type": "text", "text": text}], answer_text=text,
            ))  # fmt: skip
        if len(rows) >= 5000:
            Result.objects.bulk_create(rows)
            rows = []
    Result.objects.bulk_create(rows)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def database_url() -> str:
    """The bench's database, for a server started in another process."""
    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    user, host = database.get("USER") or "postgres", database.get("HOST") or "127.0.0.1"
    return f"postgres://{user}@{host}:{database.get('PORT') or 5432}/{database['NAME']}"
