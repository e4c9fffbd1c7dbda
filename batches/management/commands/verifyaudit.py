from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from batches import audit_chain, audit_verify


class Command(BaseCommand):
    help = (
        "Check the audit log's hash chain, entry by entry in id order: exit 1 naming the first "
        "entry that was changed, removed or inserted out of order, or when the newest entries are "
        "gone (compared with the head stored in audit/head.json and with --expect-head); "
        "exit 0 with the count when all is intact."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expect-head",
            type=audit_chain.parse_head,
            metavar="ID:HASH",
            help="a head copied from outside the database: the log line 'audit chain head id=… "
            "hash=…' or /metrics' batch_dashboard_audit_head_info",
        )
        parser.add_argument(
            "--chunk-size", type=int, default=2000, help="entries read at a time (default 2000)"
        )

    def handle(
        self, *, expect_head: audit_chain.Head | None, chunk_size: int, **options: Any
    ) -> None:
        try:
            expected = []
            if expect_head is not None:
                expected.append(("--expect-head", expect_head))
            try:
                stored = audit_chain.stored_head()
            except ValueError as unreadable:
                raise audit_verify.Broken(f"the stored head {unreadable}") from None
            if stored is not None:
                expected.append((f"the stored head ({audit_chain.HEAD_NAME})", stored))
            verified = audit_verify.verify(expected, chunk_size=max(1, chunk_size))
        except audit_verify.Broken as broken:
            raise CommandError(f"The audit log is not intact: {broken}.", returncode=1) from None
        if verified.head is None:
            self.stdout.write("The audit log is intact: it has no entries yet.")
        else:
            self.stdout.write(
                f"The audit log is intact: {verified.count} entries; the newest is entry "
                f"{verified.head} (ID:HASH)."
            )
        for source, head in expected:
            self.stdout.write(f"It still holds entry {head.id} as {source} gave it.")
        if not expected:
            self.stdout.write(
                f"No head from outside the database to compare with ({audit_chain.HEAD_NAME} "
                "is not stored; see --expect-head): entries removed from the newest end would "
                "not show."
            )
