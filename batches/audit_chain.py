"""The audit log's hash chain: each entry holds the hash of the entry before it and its own hash
over its content and that one, so an entry changed, removed or slipped in shows
(`manage.py verifyaudit`).

Why: migration 0010's trigger refuses UPDATE and DELETE, but the role that owns the table can
disable it, or TRUNCATE the table. A chain alone cannot see its newest entries removed, nor a
chain rewritten whole (SHA-256 has no secret), so each new head (its id and hash) also leaves the
database as it is committed: a log line on `batches.audit.chain`, the `/metrics` gauges (whose
history Prometheus keeps), and `audit/head.json` in the file storage. `verifyaudit` compares the
table's head with the stored one and with one an operator gives (`--expect-head ID:HASH`).

Appending, in the transaction that inserts: a lock (PostgreSQL: a transaction-level advisory
lock; SQLite: its one writer, taken at BEGIN IMMEDIATE), then one query for the new ids and the
newest entry's hash, then the insert. The unique constraint on prev_hash backs the lock.
"""

import argparse
import hashlib
import ipaddress
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.options import Options
from django.utils import timezone
from django.utils.module_loading import import_string

log = logging.getLogger("batches.audit.chain")

# The first entry's prev_hash.
GENESIS = "0" * 64
# Where the newest head is stored, in the default file storage.
HEAD_NAME = "audit/head.json"
# The key of the PostgreSQL advisory lock that appends take, one at a time.
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"batches.audit.chain").digest()[:8], signed=True)
# Whole numbers beyond this are floats in the hash (jsonb and SQLite give 1e20 back as an int).
_EXACT = 2**53


class ChainedEntry(Protocol):
    """An audit entry (batches.models.AuditEntry, a floor up) as the chain sees it: what the hash
    is taken over, and what appending sets."""

    id: int
    at: datetime
    prev_hash: str
    hash: str

    @property
    def _meta(self) -> "Options[Any]": ...
    @property
    def actor_id(self) -> int | None: ...
    @property
    def actor_name(self) -> str: ...
    @property
    def workspace_id(self) -> int | None: ...
    @property
    def workspace_name(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def address(self) -> str | None: ...
    @property
    def before(self) -> Any: ...
    @property
    def after(self) -> Any: ...


# The hash ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON value in one form, whether it is about to be stored or was read back: a number is
    an int when it is a whole number a float holds exactly, else a float (PostgreSQL's jsonb
    gives 1.0 back as 1.0 but 1e20 as 100000000000000000000)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) < _EXACT:
            return value
        try:
            return float(value)
        except OverflowError:
            return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _EXACT else value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return {key: _plain(item) for key, item in value.items()}


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _stored_json(value: object) -> Any:
    """A JSON field's value as the database will give it back (tuples become lists, keys
    strings), in one form."""
    return _plain(json.loads(json.dumps(value)))


def _address(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:  # not an address: hashed as it is (it will not match what was hashed)
        return str(value)


def canonical(entry: ChainedEntry) -> bytes:
    """What an entry's hash is taken over: every field, the previous entry's hash last, as one
    JSON array with sorted keys and no spaces. The time is UTC to the microsecond, which both
    PostgreSQL and SQLite keep; an address is in its one normal form."""
    return _json(
        [
            "audit-v1",
            entry.id,
            entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
            entry.actor_id,
            entry.actor_name,
            entry.workspace_id,
            entry.workspace_name,
            entry.action,
            entry.target,
            _address(entry.address),
            _stored_json(entry.before),
            _stored_json(entry.after),
            entry.prev_hash,
        ]
    ).encode()


def content_hash(entry: ChainedEntry) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


# Appending -----------------------------------------------------------------------------------


def chain(entries: Sequence[ChainedEntry], using: str) -> None:
    """Gives `entries` (unsaved, in order) their ids, time and hashes, after the newest entry.
    Called by AuditEntry's bulk_create inside the transaction that inserts them, which then holds
    the chain until it ends; once it commits, the new head is exported."""
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("Audit entries are chained inside the transaction that adds them.")
    ids, prev_hash = _claim(connection, entries[0]._meta.db_table, len(entries))
    now = timezone.now()
    for entry, pk in zip(entries, ids, strict=True):
        entry.id = pk
        entry.at = now
        entry.prev_hash = prev_hash
        entry.hash = prev_hash = content_hash(entry)
    head = (entries[-1].id, entries[-1].hash)
    transaction.on_commit(lambda: export_head(*head), using=using)


def _claim(connection: BaseDatabaseWrapper, table_name: str, count: int) -> tuple[list[int], str]:
    """`count` new ids and the newest entry's hash, with the chain locked until the transaction
    ends. On PostgreSQL the read is a statement of its own after the lock, so (READ COMMITTED,
    Django's default) it sees the entries of whoever held the lock before."""
    table = connection.ops.quote_name(table_name)
    newest_hash = f"SELECT hash FROM {table} ORDER BY id DESC LIMIT 1"  # noqa: S608
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            cursor.execute(
                f"SELECT nextval(pg_get_serial_sequence(%s, 'id')), ({newest_hash}) "  # noqa: S608
                "FROM generate_series(1, %s)",
                [table_name, count],
            )
            rows = cursor.fetchall()
            return sorted(row[0] for row in rows), rows[0][1] or GENESIS
        # SQLite: this transaction began with the write lock (transaction_mode IMMEDIATE). Ids go
        # on from the table's AUTOINCREMENT counter, so that none is used twice, as on PostgreSQL.
        newest_id = f"SELECT id FROM {table} ORDER BY id DESC LIMIT 1"  # noqa: S608
        sequence = "SELECT seq FROM sqlite_sequence WHERE name = %s"
        cursor.execute(f"SELECT ({sequence}), ({newest_id}), ({newest_hash})", [table_name])
        counter, last_id, newest = cursor.fetchone()
        first = max(counter or 0, last_id or 0) + 1
        return list(range(first, first + count)), newest or GENESIS


# The head, outside the database --------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    id: int
    hash: str

    def __str__(self) -> str:
        return f"{self.id}:{self.hash}"


def parse_head(text: str) -> Head:
    """ID:HASH, as the log line (`id=… hash=…`) or the metric's labels give them."""
    number, _, digest = text.strip().partition(":")
    digest = digest.strip().lower()
    if not number.strip().isdigit() or len(digest) != 64 or not _is_hex(digest):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not ID:HASH (an entry's id, a colon, its 64 hex digits)."
        )
    return Head(int(number), digest)


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text)


def export_head(head_id: int, head_hash: str) -> None:
    """Called once an append has committed: the new head leaves the database."""
    log.info("audit chain head id=%s hash=%s", head_id, head_hash)
    try:
        stored = _json({"id": head_id, "hash": head_hash}).encode()
        _head_storage().save(HEAD_NAME, ContentFile(stored))
    except Exception:  # the log line is the record; a storage down must not fail the change
        log.warning("The audit chain's head could not be stored as %s.", HEAD_NAME, exc_info=True)


_overwriting: dict[str, Storage] = {}


def _head_storage() -> "Storage | _ReplacingStorage":
    """The default file storage, but one that overwrites (each head replaces the one before, in
    one write; the configured storage keeps both under two names). Two appends that commit at
    the same moment may store their heads in either order: the stored head can lag one behind
    the table, never run ahead of it, and `verifyaudit` accepts a table newer than it."""
    config = cast(dict, settings.STORAGES["default"])
    key = repr(config)
    if key not in _overwriting:
        backend = import_string(config["BACKEND"])
        options = dict(config.get("OPTIONS", {}))
        if issubclass(backend, FileSystemStorage):
            options["allow_overwrite"] = True
        elif "file_overwrite" in options:  # django-storages' S3, as dashboard/settings.py has it
            options["file_overwrite"] = True
        else:
            return _ReplacingStorage()
        _overwriting.clear()
        _overwriting[key] = backend(**options)
    return _overwriting[key]


class _ReplacingStorage:
    """For a storage that cannot overwrite: the old head removed, then the new one saved."""

    def save(self, name: str, content: File) -> str:
        default_storage.delete(name)
        saved = default_storage.save(name, content)
        if saved != name:  # another process stored its head in between: keep that one
            default_storage.delete(saved)
        return name


def stored_head() -> Head | None:
    """The head last stored (audit/head.json), or None when none is. Raises ValueError when it
    is there but cannot be read."""
    for attempt in range(3):
        try:
            if not default_storage.exists(HEAD_NAME):
                return None
            with default_storage.open(HEAD_NAME, "rb") as stored:
                found = json.loads(stored.read())
            return parse_head(f"{int(found['id'])}:{found['hash']}")
        except (ValueError, KeyError, TypeError, argparse.ArgumentTypeError):
            if attempt == 2:  # not a moment's partial write
                raise ValueError(f"{HEAD_NAME} is not an entry's id and hash") from None
            time.sleep(0.1)
    return None
