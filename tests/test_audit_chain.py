"""The audit log's hash chain: every entry is chained as it is added, `verifyaudit` finds an entry
changed, removed or slipped in, and the newest entries removed or the table emptied (with the head
exported outside the database); on PostgreSQL, a role for the app that cannot rewrite the log.

To change rows, these tests do what the review feared: as the table's owner, the append-only
trigger disabled, raw SQL past the ORM (`tampering`)."""

import copy
import io
import itertools
import os
import re
import subprocess
import sys
import threading
import tracemalloc
import uuid
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, models, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import RequestFactory

from batches import audit, audit_chain, audit_verify
from batches.models import AuditEntry
from tests import factories

pytestmark = pytest.mark.django_db
Action = AuditEntry.Action
TABLE = "batches_auditentry"
postgresql_only = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="PostgreSQL's roles and locks (CI runs PostgreSQL)",
)


@pytest.fixture(autouse=True)
def _no_stored_head():
    """Each test starts without a stored head (another test's would name entries long gone)."""
    default_storage.delete(audit_chain.HEAD_NAME)
    yield
    default_storage.delete(audit_chain.HEAD_NAME)


def failed(name: str, number: int = 0) -> AuditEntry:
    return audit.record(Action.LOGIN_FAILED, actor_name=name, target=f"username {name} {number}")


def chained() -> list[AuditEntry]:
    return list(AuditEntry.objects.order_by("id"))


@contextmanager
def tampering():
    """A cursor with which to change the audit table as its owner could: on PostgreSQL with the
    append-only trigger disabled (in this transaction only)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE batches_auditentry DISABLE TRIGGER batches_auditentry_append_only"
            )
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE batches_auditentry ENABLE TRIGGER batches_auditentry_append_only"
            )


def forge(**fields) -> AuditEntry:
    """An entry written past the chain (as a role that may INSERT could), its hash made right."""
    forged = AuditEntry(**fields)
    forged.hash = audit_chain.content_hash(forged)
    with transaction.atomic():
        models.QuerySet.bulk_create(AuditEntry.objects.all(), [forged])
    return forged


def leave_a_gap() -> int:
    """Uses up an id, as an append rolled back does on PostgreSQL."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence('batches_auditentry', 'id'))")
        else:
            cursor.execute(
                "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'batches_auditentry'"
            )
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches_auditentry'")
        return cursor.fetchone()[0]


def verifyaudit(*args) -> str:
    out = io.StringIO()
    call_command("verifyaudit", *args, stdout=out)
    return out.getvalue()


def verifyaudit_fails(*args) -> str:
    with pytest.raises(CommandError) as raised:
        verifyaudit(*args)
    assert raised.value.returncode == 1
    return str(raised.value)


def label(entry: AuditEntry) -> str:
    return re.escape(audit_verify.describe(entry))


# Writing the chain ------------------------------------------------------------------------------


def test_it_chains_every_entry_in_id_order_whichever_way_it_is_added(client, user, workspace):
    failed("mallory")
    client.force_login(user)  # the login's receiver
    audit.record_batches(
        Action.BATCH_ENDED, workspace, [factories.batch(workspace), factories.batch(workspace)]
    )
    AuditEntry.objects.create(action=Action.LOGOUT, actor_name="ada")
    AuditEntry(action=Action.LOGOUT, actor_name="lin").save()
    entries = chained()
    assert len(entries) >= 6
    assert entries[0].prev_hash == audit_chain.GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
        assert after.id > before.id and after.at >= before.at
    for entry in entries:  # as read back from the database
        assert entry.hash == audit_chain.content_hash(entry)
        assert re.fullmatch("[0-9a-f]{64}", entry.hash)
    with pytest.raises(AuditEntry.Immutable):
        AuditEntry.objects.bulk_create([AuditEntry(action="login")], ignore_conflicts=True)
    with pytest.raises(AuditEntry.Immutable):
        entries[0].save()


def test_its_hash_covers_every_field_and_the_entry_before(user, workspace):
    request = RequestFactory().get("/", REMOTE_ADDR="2001:db8::7")
    request.user = user
    entry = audit.record(
        Action.SETTINGS_CHANGE, request=request, workspace=workspace, target="workspace",
        before={"tries": 20}, after={"tries": 10},
    )  # fmt: skip
    assert entry.address == "2001:db8::7" and entry.actor_id == user.pk
    changes = {
        "id": entry.id + 1, "at": entry.at + timedelta(microseconds=1),
        "actor_id": user.pk + 1, "actor_name": "ada", "workspace_id": None,
        "workspace_name": "Other", "action": Action.CANCEL, "target": "workspace ",
        "address": "2001:db8::8", "before": {"tries": 21}, "after": {"tries": "10"},
        "prev_hash": "f" * 64,
    }  # fmt: skip
    assert set(changes) == {
        field.name for field in AuditEntry._meta.fields if field.name != "hash"
    }  # every field
    for name, value in changes.items():
        changed = copy.copy(entry)
        setattr(changed, name, value)
        assert audit_chain.content_hash(changed) != entry.hash, name


def test_it_hashes_each_value_as_the_database_gives_it_back(user):
    entry = audit.entry(
        Action.SETTINGS_CHANGE, actor=user, target="workspace",
        before={"b": 1.0, "a": [1e20, 0.1, 2.5e-7, "é ✓", None, True], "n": {"z": 2, "y": (1, 2)}},
        after={"9": 12345678901234567890, "8": -0.0, "": ""},
    )  # fmt: skip
    entry.address = "2001:0DB8:0000:0000::0001"  # written as no database gives it back
    entry.save()
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.hash == entry.hash == audit_chain.content_hash(stored)
    assert stored.address == "2001:db8::1"
    assert verifyaudit().startswith("The audit log is intact")


@pytest.mark.django_db(transaction=True)
def test_two_writers_at_once_keep_one_chain():
    start = threading.Barrier(2)
    problems = []

    def write(name):
        try:
            start.wait()
            for number in range(20):
                failed(name, number)
        except Exception as error:  # reported below
            problems.append(error)
        finally:
            connection.close()

    writers = [threading.Thread(target=write, args=(name,)) for name in ("ada", "lin")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert not problems
    assert audit_verify.verify().count == 40
    assert sorted(entry.actor_name for entry in chained()) == ["ada"] * 20 + ["lin"] * 20


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_an_append_waits_for_the_chains_lock_on_postgresql():
    failed("ada")
    holder = psycopg.connect(**_connect_as(connection.settings_dict["USER"]))
    done = threading.Event()

    def append():
        try:
            failed("lin")
            done.set()
        finally:
            connection.close()

    try:
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", [audit_chain._LOCK_KEY])
            writer = threading.Thread(target=append)
            writer.start()
            assert not done.wait(1.0)  # held back while another append holds the chain
        writer.join(timeout=30)
        assert done.is_set()
    finally:
        holder.close()
    assert audit_verify.verify().count == 2


def test_a_second_entry_after_the_same_one_is_refused():
    first = failed("ada")
    failed("lin")
    with pytest.raises(IntegrityError):
        forge(id=leave_a_gap(), action=Action.LOGIN, actor_name="mallory", prev_hash=first.hash)


# verifyaudit --------------------------------------------------------------------------------------


def test_verifyaudit_counts_an_intact_log():
    assert "it has no entries yet" in verifyaudit()
    entries = [failed("ada", number) for number in range(3)]
    newest = entries[-1]
    said = verifyaudit("--expect-head", f"{newest.id}:{newest.hash}")
    assert f"intact: 3 entries; the newest is entry {newest.id}:{newest.hash}" in said
    assert f"It still holds entry {newest.id} as --expect-head gave it." in said
    older = entries[0]  # a head copied earlier: the log has gone on since
    assert "intact" in verifyaudit("--expect-head", f"{older.id}:{older.hash}")
    with pytest.raises(CommandError, match="is not ID:HASH"):
        verifyaudit("--expect-head", "12:nothex")


def test_verifyaudit_names_a_changed_entry():
    ada, lin, grace = failed("ada"), failed("lin"), failed("grace")
    with tampering() as cursor:
        cursor.execute(
            "UPDATE batches_auditentry SET target = 'username nobody' WHERE id = %s", [lin.id]
        )
    said = verifyaudit_fails()
    assert re.search(f"{label(lin)} was changed: its content does not match its hash", said), said
    assert f"entry {lin.id} ({lin.at:%Y-%m-%d %H:%M} lin: login_failed) was changed" in said
    with tampering() as cursor:  # a change to the time alone shows too
        cursor.execute(
            "UPDATE batches_auditentry SET target = %s WHERE id = %s", [lin.target, lin.id]
        )
        cursor.execute(
            "UPDATE batches_auditentry SET at = %s WHERE id = %s",
            [grace.at + timedelta(seconds=1), grace.id],
        )
    assert f"entry {grace.id} (" in verifyaudit_fails()
    assert ada.id < lin.id < grace.id


def test_verifyaudit_names_removed_entries():
    ada, lin, grace, bob = (failed(name) for name in ("ada", "lin", "grace", "bob"))
    with tampering() as cursor:
        cursor.execute("DELETE FROM batches_auditentry WHERE id IN (%s, %s)", [lin.id, grace.id])
    said = verifyaudit_fails()
    assert (
        f"entries between {ada.id} and {bob.id} were removed: entry {bob.id} does not follow "
        f"{ada.id}"
    ) in said
    with tampering() as cursor:
        cursor.execute("DELETE FROM batches_auditentry WHERE id = %s", [ada.id])
    said = verifyaudit_fails()
    assert re.search(f"the oldest entries were removed: {label(bob)} is not the first", said)


def test_verifyaudit_names_an_entry_inserted_out_of_order():
    ada, lin = failed("ada"), failed("lin")
    gap = leave_a_gap()
    grace, bob = failed("grace"), failed("bob")
    assert lin.id < gap < grace.id
    # Written into the gap, after the fact: its own hash right, but it can follow no entry that
    # another already follows (see the test above), so it claims a predecessor of its own.
    forged = forge(id=gap, at=lin.at, action=Action.LOGIN, actor_name="mallory", prev_hash="e" * 64)
    said = verifyaudit_fails()
    assert re.search(
        f"{label(forged)} was inserted out of order: entry {grace.id} follows entry {lin.id}, "
        "not it",
        said,
    ), said
    assert ada.id < lin.id < bob.id


def test_verifyaudit_notices_the_newest_entries_removed_or_the_table_emptied():
    failed("ada")
    lin, grace = failed("lin"), failed("grace")
    head = f"{grace.id}:{grace.hash}"
    with tampering() as cursor:
        cursor.execute("DELETE FROM batches_auditentry WHERE id = %s", [grace.id])
    # The chain alone cannot tell: what it has is intact (and it says so).
    assert "entries removed from the newest end would not show" in verifyaudit()
    said = verifyaudit_fails("--expect-head", head)
    assert (
        f"the newest entries were removed: the log ends at entry {lin.id}, but --expect-head "
        f"names entry {grace.id}"
    ) in said
    with tampering() as cursor:
        cursor.execute(
            "TRUNCATE batches_auditentry"
            if connection.vendor == "postgresql"
            else "DELETE FROM batches_auditentry"
        )
    said = verifyaudit_fails("--expect-head", head)
    assert f"the log is empty, but --expect-head names entry {grace.id}: the table was " in said


def test_verifyaudit_compares_with_the_stored_head():
    failed("ada")
    lin = failed("lin")
    audit_chain.export_head(lin.id, lin.hash)  # as after the commit
    assert audit_chain.stored_head() == audit_chain.Head(lin.id, lin.hash)
    grace = failed("grace")  # the table may go on past the stored head
    said = verifyaudit()
    assert f"It still holds entry {lin.id} as the stored head (audit/head.json) gave it." in said
    with tampering() as cursor:
        cursor.execute("DELETE FROM batches_auditentry WHERE id IN (%s, %s)", [lin.id, grace.id])
    said = verifyaudit_fails()
    assert f"but the stored head (audit/head.json) names entry {lin.id}" in said
    default_storage.delete(audit_chain.HEAD_NAME)
    default_storage.save(audit_chain.HEAD_NAME, io.StringIO("{not json"))
    assert "the stored head audit/head.json is not an entry's id and hash" in verifyaudit_fails()


def test_verifyaudit_notices_a_log_rewritten_from_some_entry_on():
    """SHA-256 has no secret: whoever can change rows can compute every hash again. Only a head
    kept outside the database shows it."""
    failed("ada")
    lin, grace = failed("lin"), failed("grace")
    exported = f"{grace.id}:{grace.hash}"
    lin.target = "username nobody"
    lin.hash = audit_chain.content_hash(lin)
    grace.prev_hash = lin.hash
    grace.hash = audit_chain.content_hash(grace)
    with tampering() as cursor:
        update = (
            "UPDATE batches_auditentry SET target = %s, prev_hash = %s, hash = %s WHERE id = %s"
        )
        for entry in (lin, grace):
            cursor.execute(update, [entry.target, entry.prev_hash, entry.hash, entry.id])
    assert "intact" in verifyaudit()
    said = verifyaudit_fails("--expect-head", exported)
    assert re.search(
        f"{label(grace)} is not the entry --expect-head names .*: the log was rewritten", said
    ), said


def test_verifyaudit_reads_the_log_a_chunk_at_a_time():
    def add(count):
        AuditEntry.objects.bulk_create(
            (AuditEntry(action=Action.LOGIN, actor_name=f"user{n}") for n in range(count)),
            batch_size=1000,
        )

    def peak_while_verifying() -> tuple[int, int]:
        tracemalloc.start()
        try:
            count = audit_verify.verify(chunk_size=200).count
            return count, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    add(1000)
    peak_while_verifying()  # the first run's one-off costs (compiled queries, caches)
    few, few_peak = peak_while_verifying()
    add(9000)
    many, many_peak = peak_while_verifying()
    assert (few, many) == (1000, 10000)
    # Ten times the entries, the same memory (holding them all would be some 10 MB more).
    assert many_peak < few_peak * 1.5, (few_peak, many_peak)
    assert "intact: 10000 entries" in verifyaudit("--chunk-size", "500")


# The head, outside the database ---------------------------------------------------------------


def test_each_new_head_is_logged_and_stored_once_committed(
    django_capture_on_commit_callbacks, caplog, workspace
):
    caplog.set_level("INFO", logger="batches.audit.chain")
    ended = [factories.batch(workspace), factories.batch(workspace)]
    with django_capture_on_commit_callbacks(execute=True):
        ada = failed("ada")
    with django_capture_on_commit_callbacks(execute=True):
        audit.record_batches(Action.BATCH_ENDED, workspace, ended)
    newest = chained()[-1]
    lines = [r.getMessage() for r in caplog.records if r.name == "batches.audit.chain"]
    assert lines == [
        f"audit chain head id={ada.id} hash={ada.hash}",
        f"audit chain head id={newest.id} hash={newest.hash}",
    ]
    assert audit_chain.stored_head() == audit_chain.Head(newest.id, newest.hash)
    caplog.clear()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ZeroDivisionError),
        transaction.atomic(),
    ):
        failed("lin")
        1 / 0  # noqa: B018 (the change fails: its entry is gone, and no head is exported)
    assert callbacks == [] and not caplog.records
    assert audit_chain.stored_head() == audit_chain.Head(newest.id, newest.hash)


def test_the_head_is_stored_by_overwriting_whichever_storage_holds_the_files(settings):
    from foundations.object_storage import ObjectStorage

    local = audit_chain._head_storage()
    assert isinstance(local, FileSystemStorage) and local.path("x") == default_storage.path("x")
    assert local.get_alternative_name("head", ".json") == "head.json"  # it overwrites
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "foundations.object_storage.ObjectStorage",
            "OPTIONS": {"bucket_name": "files", "location": "here", "file_overwrite": False},
        },
    }
    bucket = audit_chain._head_storage()  # one PUT a head, not a check for the name first
    assert isinstance(bucket, ObjectStorage)
    assert bucket.file_overwrite and (bucket.bucket_name, bucket.location) == ("files", "here")


# PostgreSQL: who may rewrite the log -----------------------------------------------------------


def test_check_deploy_warns_when_the_app_could_rewrite_the_log():
    found = audit_verify.check_audit_role()
    if connection.vendor != "postgresql":
        assert found == []
        return
    # The suite connects as the superuser that made the tables: exactly what the check is for.
    [warning] = found
    assert warning.id == "batches.W010"
    assert f"as {connection.settings_dict['USER']}, which is a superuser" in warning.msg
    assert "MIGRATE_DATABASE_URL" in (warning.hint or "")


def _connect_as(role: str) -> dict:
    database = connection.settings_dict
    return {
        "host": database["HOST"], "port": database["PORT"] or 5432,
        "dbname": database["NAME"], "user": role, "autocommit": True,
    }  # fmt: skip


def _url(role: str) -> str:
    database = connection.settings_dict
    port = database["PORT"] or 5432
    return f"postgres://{role}@{database['HOST']}:{port}/{database['NAME']}"


def _readme_grants(app: str, owner: str) -> str:
    """The SQL of the README's 'A database role for the app', for these roles and database."""
    readme = (settings.BASE_DIR / "README.md").read_text(encoding="utf-8")
    section = readme.split("### A database role for the app", 1)[1]
    sql = section.split("```sql", 1)[1].split("```", 1)[0]
    sql = sql.replace("batch_dashboard_owner", owner).replace("batch_dashboard_app", app)
    return re.sub(r"\bbatch_dashboard\b", connection.settings_dict["NAME"], sql)


def _manage(args, env, tmp_path):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_role_granted_as_the_readme_says_may_add_and_read_entries_but_not_rewrite_them(
    tmp_path,
):
    failed("ada")
    owner = connection.settings_dict["USER"]
    app = f"audit_app_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(_readme_grants(app, owner))
    try:
        # The app itself, as that role: it adds an entry (the chain's lock, ids and insert),
        # verifies the log, and its deploy check finds nothing to say.
        script = (
            "from django.core import checks; from django.core.management import call_command; "
            "from batches import audit; "
            "audit.record('login_failed', actor_name='app', target='username app'); "
            "call_command('verifyaudit'); "
            "print('checks:', [m.id for m in checks.run_checks(include_deployment_checks=True) "
            "if m.id.startswith('batches.')])"
        )
        result = _manage(["shell", "-c", script], {"DATABASE_URL": _url(app)}, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "The audit log is intact: 2 entries" in result.stdout
        assert "checks: []" in result.stdout
        assert "audit chain head id=" in result.stderr  # its log line

        with psycopg.connect(**_connect_as(app)) as as_app:
            assert as_app.execute("SELECT count(*) FROM batches_auditentry").fetchone() == (2,)
            as_app.execute(
                "INSERT INTO batches_auditentry (id, at, actor_name, workspace_name, action, "
                "target, before, after, prev_hash, hash) VALUES (nextval(pg_get_serial_sequence("
                "%s, 'id')), now(), 'app', '', 'login', '', '{}', '{}', %s, %s)",
                [TABLE, "a" * 64, "b" * 64],
            )
            as_app.execute("UPDATE batches_workspace SET name = name")  # other tables: as usual
            for refused in (
                "UPDATE batches_auditentry SET target = 'x'",
                "DELETE FROM batches_auditentry",
                "TRUNCATE batches_auditentry",
                "ALTER TABLE batches_auditentry DISABLE TRIGGER batches_auditentry_append_only",
                "ALTER TABLE batches_auditentry DISABLE TRIGGER ALL",
                "DROP TABLE batches_auditentry",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    as_app.execute(refused)
            assert as_app.execute("SELECT count(*) FROM batches_auditentry").fetchone() == (3,)
            as_app.execute("ANALYZE batches_result")  # skipped with a notice, not refused

        # The deploy check, as that role: quiet, until it may TRUNCATE the table.
        with connection.cursor() as cursor:
            for grant, expected in (
                ("", []),
                (f"GRANT TRUNCATE ON batches_auditentry TO {app}", ["W011"]),
            ):
                if grant:
                    cursor.execute(grant)
                cursor.execute(f"SET ROLE {app}")
                try:
                    found = audit_verify.check_audit_role()
                finally:
                    cursor.execute("RESET ROLE")
                assert [str(message.id).removeprefix("batches.") for message in found] == expected
        assert f"role {app} may TRUNCATE the audit table" in found[0].msg
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {app}; DROP ROLE {app}")


@postgresql_only
def test_migrate_connects_as_the_role_MIGRATE_DATABASE_URL_names(tmp_path):
    nobody = f"nobody_{uuid.uuid4().hex[:12]}"
    env = {
        "DATABASE_URL": _url(nobody),
        "MIGRATE_DATABASE_URL": _url(connection.settings_dict["USER"]),
    }
    migrated = _manage(["migrate", "--check"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr  # as the owner: nothing left to apply
    other = _manage(["showmigrations", "batches"], env, tmp_path)
    assert other.returncode != 0 and f'role "{nobody}" does not exist' in other.stderr


# The migration ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_the_entries_written_before_it():
    migration = ("batches", "0018_audit_chain")
    executor = MigrationExecutor(connection)
    [before] = executor.loader.graph.node_map[migration].parents
    executor.migrate([before.key])
    try:
        old = executor.loader.project_state([before.key]).apps.get_model("batches", "AuditEntry")
        for number in range(5):
            old.objects.create(
                action="login", actor_name=f"user{number}", address="::ffff:10.0.0.1",
                before={"n": number / 2}, after={"list": [1, "two"]},
            )  # fmt: skip
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate([migration])
    entries = chained()
    assert len(entries) == 5 and entries[0].prev_hash == audit_chain.GENESIS
    assert audit_verify.verify().count == 5
    newest = failed("ada")  # and the chain goes on from them
    assert newest.prev_hash == entries[-1].hash
    assert audit_verify.verify().count == 6
