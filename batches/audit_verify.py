"""Checking the audit log's hash chain (batches.audit_chain): `manage.py verifyaudit`'s walk,
and the deploy check that warns while the app's own database role could rewrite the log."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from batches.audit_chain import GENESIS, Head, content_hash
from batches.models import AuditEntry


class Broken(Exception):
    """The chain does not hold: the message names the first entry where it breaks."""


def describe(entry: AuditEntry) -> str:
    at = timezone.localtime(entry.at)
    return f"entry {entry.id} ({at:%Y-%m-%d %H:%M} {entry.actor_name or 'system'}: {entry.action})"


@dataclass(frozen=True)
class Verified:
    count: int
    head: Head | None


def verify(expected: Sequence[tuple[str, Head]] = (), chunk_size: int = 2000) -> Verified:
    """Walks the whole log in id order, `chunk_size` entries in memory at a time, and raises
    Broken naming the first entry changed, removed or out of order; then compares the newest
    entry with each `expected` head ((where it comes from, head)): the table may have gone on
    since, but must still hold that entry, unchanged."""
    watched = {head.id: (source, head) for source, head in expected}
    found: set[int] = set()
    previous = None  # (id, hash) of the entry before
    count = 0
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=chunk_size):
        count += 1
        if content_hash(entry) != entry.hash:
            raise Broken(f"{describe(entry)} was changed: its content does not match its hash")
        if entry.prev_hash != (previous[1] if previous else GENESIS):
            raise Broken(_unlinked(entry, previous))
        if entry.id in watched:
            source, head = watched[entry.id]
            if entry.hash != head.hash:
                raise Broken(
                    f"{describe(entry)} is not the entry {source} names (hash {head.hash}): the "
                    "log was rewritten from this entry on, or before"
                )
            found.add(entry.id)
        previous = (entry.id, entry.hash)
    newest = Head(*previous) if previous else None
    for source, head in expected:
        if newest is None:
            raise Broken(
                f"the log is empty, but {source} names entry {head.id}: the table was emptied"
            )
        if newest.id < head.id:
            raise Broken(
                f"the newest entries were removed: the log ends at entry {newest.id}, but "
                f"{source} names entry {head.id}"
            )
        if head.id not in found:
            raise Broken(
                f"entry {head.id}, which {source} names, is missing: the log was rewritten"
            )
    return Verified(count, newest)


def _unlinked(entry: AuditEntry, previous: tuple[int, str] | None) -> str:
    """Why an entry whose content is intact does not follow the entry before it. One more
    query or two, once. An entry forged with a made-up predecessor reads as a removal before
    it (there is no telling them apart)."""
    entries = AuditEntry.objects.order_by("id")
    if previous is not None:
        if entry.prev_hash == GENESIS:
            return (
                f"{describe(entry)} was inserted out of order: it claims to be the first entry, "
                f"but entry {previous[0]} comes before it"
            )
        successor = entries.filter(prev_hash=previous[1]).first()
        if successor is not None:
            return (
                f"{describe(entry)} was inserted out of order: entry {successor.id} follows "
                f"entry {previous[0]}, not it"
            )
    source = entries.filter(hash=entry.prev_hash).exclude(pk=entry.pk).first()
    if source is not None and source.id > entry.id:
        return (
            f"{describe(entry)} was inserted out of order: it follows entry {source.id}, which "
            "comes after it"
        )
    if previous is None:
        return f"the oldest entries were removed: {describe(entry)} is not the first entry"
    if source is not None:
        return (
            f"{describe(entry)} follows entry {source.id}, not entry {previous[0]}: the entries "
            "between them were inserted out of order"
        )
    return (
        f"entries between {previous[0]} and {entry.id} were removed: entry {entry.id} does not "
        f"follow {previous[0]}"
    )


# Who may rewrite it --------------------------------------------------------------------------


@checks.register(checks.Tags.security, deploy=True)
def check_audit_role(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """On PostgreSQL, a warning when the app's own role could rewrite the audit log: it owns the
    table (or is a member of the role that does) or is a superuser, so it can disable the
    append-only trigger, or it may TRUNCATE, UPDATE or DELETE the table."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return []
    table = AuditEntry._meta.db_table
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, r.rolsuper, pg_has_role(current_user, c.relowner, 'MEMBER'),"
                " has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'),"
                " has_table_privilege(c.oid, 'TRUNCATE')"
                " FROM pg_class c JOIN pg_roles r ON r.rolname = current_user"
                " WHERE c.oid = to_regclass(%s)",
                [table],
            )
            row = cursor.fetchone()
    except DatabaseError as error:
        return [
            checks.Info(
                f"Who may rewrite the audit log was not checked: {type(error).__name__}.",
                id="batches.I010",
            )
        ]
    if row is None:  # not migrated yet
        return []
    role, superuser, owner, *rights = row
    hint = (
        f"Connect as a role that may only INSERT and SELECT {table}, and migrate as the owner "
        "(MIGRATE_DATABASE_URL): README, 'A database role for the app'."
    )
    if superuser or owner:
        what = "is a superuser" if superuser else f"owns the audit table ({table})"
        return [
            checks.Warning(
                f"The app connects to PostgreSQL as {role}, which {what}: it can disable the "
                "trigger that keeps audit entries append-only, or empty the table.",
                hint=hint,
                id="batches.W010",
            )
        ]
    kinds = ("UPDATE", "DELETE", "TRUNCATE")
    granted = [name for name, held in zip(kinds, rights, strict=True) if held]
    if granted:
        return [
            checks.Warning(
                f"The app's role {role} may {', '.join(granted)} the audit table ({table}).",
                hint=f"REVOKE {', '.join(granted)} ON {table} FROM {role}; {hint}",
                id="batches.W011",
            )
        ]
    return []
