import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from batches import ingestion, mirror
from batches.models import Workspace


class Command(BaseCommand):
    help = "Sync batches and ingest results in the foreground, without Celery."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="the workspace's name or slug (default: all)")
        parser.add_argument(
            "--loop",
            action="store_true",
            help=f"repeat every SYNC_INTERVAL_SECONDS ({settings.SYNC_INTERVAL_SECONDS:g} s)",
        )

    def handle(self, workspace: str | None, loop: bool, **options: Any) -> None:
        workspaces = Workspace.objects.all()
        if workspace:
            workspaces = workspaces.filter(name=workspace) | workspaces.filter(slug=workspace)
            if not workspaces.exists():
                raise CommandError(f"No workspace named {workspace!r}.")
        ids = list(workspaces.values_list("pk", flat=True))
        try:
            while True:
                failed = self.sync_once(ids)
                if not loop:
                    break
                time.sleep(settings.SYNC_INTERVAL_SECONDS)
        except KeyboardInterrupt:
            return
        if failed:
            raise CommandError(f"{failed} workspace(s) failed to sync; see above.")

    def sync_once(self, ids: list[int]) -> int:
        failed = 0
        for workspace_id in ids:
            report = mirror.sync_workspace(workspace_id)
            self.stdout.write(str(report))
            failed += bool(report.error)
            for batch_id in report.to_ingest:
                result = ingestion.ingest_results(batch_id)
                if result.skipped:
                    continue
                line = f"  batch {batch_id}: {result.stored:,} results stored"
                if result.error:
                    line = f"  batch {batch_id}: ingestion failed: {result.error}"
                self.stdout.write(line)
        return failed
