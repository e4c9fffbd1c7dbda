"""Celery tasks: thin doors into batches.sync and batches.notices. They take ids, never model
instances."""

from celery import shared_task

from batches import notices, summaries, sync
from batches.models import Batch, Workspace


@shared_task
def sync_all_workspaces() -> int:
    """The beat's tick: one sync task per workspace, so one slow or broken key stalls no other."""
    ids = list(Workspace.objects.values_list("pk", flat=True))
    for workspace_id in ids:
        sync_workspace.delay(workspace_id)
    return len(ids)


@shared_task
def sync_workspace(workspace_id: int) -> str:
    report = sync.sync_workspace(workspace_id)
    for batch_id in report.to_ingest:
        ingest_results.delay(batch_id)
    if (
        Workspace.objects.filter(pk=workspace_id)
        .exclude(notify_email=False, notify_webhook_url="")
        .exists()
    ):
        for batch_id in notices.batches_to_announce(workspace_id):
            announce_batch_end.delay(batch_id)
    return str(report)


@shared_task
def ingest_results(batch_id: int) -> dict:
    report = sync.ingest_results(batch_id)
    if report.stored and not report.error:
        summaries.store_totals(Batch.objects.filter(pk=batch_id))
    return {"stored": report.stored, "skipped": report.skipped, "error": report.error}


@shared_task
def announce_batch_end(batch_id: int) -> dict:
    """The workspace's email and webhook for one ended batch, sent once."""
    return notices.announce(batch_id)


@shared_task
def submit_submission(submission_id: int) -> str:
    """Create the batches of a submission that was moved to `submitting` (see submissions.py).

    (Owned by the intake; keep this task when editing the file.)
    """
    from batches.submissions import create_batches

    return create_batches(submission_id).state
