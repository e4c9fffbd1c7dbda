"""`manage.py exportresults BATCH_ID`: a batch's results from the shell, the same files the
download buttons give, streamed to standard output or a file."""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from batches import downloads
from batches.models import Batch
from batches.operations import batches as batch_operations

FORMATS = {  # what each of downloads.BATCH_FILES is
    "jsonl": "the results as the API gave them, one JSON object a line",
    "csv": "one row a result: custom_id, outcome, answer, tokens, error",
    "answers": "the uploaded CSV with each row's answer appended",
}


class Command(BaseCommand):
    help = "Write a batch's results (JSONL, CSV, or the uploaded CSV with its answers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("batch_id", help="the batch's id, msgbatch_...")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="jsonl",
            help="; ".join(f"{name}: {what}" for name, what in FORMATS.items()),
        )
        parser.add_argument("--output", type=Path, help="a file to write (default: stdout)")
        parser.add_argument("--workspace", help="the workspace's slug, when two hold the id")

    def handle(self, *args: Any, **options: Any) -> None:
        batch = self._batch(options["batch_id"], options["workspace"])
        try:
            chunks, name = downloads.batch_file(batch, options["format"])
        except downloads.NotAvailable as reason:
            message = str(reason)
            if options["format"] == "answers":
                message += " Use --format csv."
            raise CommandError(message) from None
        output: Path | None = options["output"]
        written = 0
        if output is None:
            out = getattr(self.stdout._out, "buffer", None)  # bytes where the stream takes them
            for chunk in chunks:
                data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                written += len(data)
                if out is not None:
                    out.write(data)
                else:
                    self.stdout.write(data.decode("utf-8"), ending="")
            if out is not None:
                out.flush()
        else:
            partial = output.with_name(output.name + ".partial")
            try:
                with partial.open("wb") as handle:
                    for chunk in chunks:
                        data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                        written += len(data)
                        handle.write(data)
                partial.replace(output)  # whole, or not there at all
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        batch_operations.record_download(batch, None, name, via="exportresults")
        if output is not None:
            sys.stderr.write(f"Wrote {written:,} bytes to {output}.\n")

    def _batch(self, api_id: str, workspace: str | None) -> Batch:
        found = Batch.objects.filter(api_id=api_id).select_related("workspace", "submission")
        if workspace:
            found = found.filter(workspace__slug=workspace)
        batches = list(found[:2])
        if not batches:
            where = f" in workspace {workspace!r}" if workspace else ""
            raise CommandError(f"No batch {api_id!r}{where} is known here. Sync, or check the id.")
        if len(batches) > 1:
            raise CommandError(
                f"Two workspaces hold a batch {api_id!r}: name one with --workspace "
                f"({', '.join(batch.workspace.slug for batch in batches)})."
            )
        return batches[0]
