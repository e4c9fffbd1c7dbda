"""Celery tasks: thin doors into batches.sync and batches.notices. They take ids, never model
instances."""

from django.conf import settings
from django.utils import timezone

from batches import notices, submissions, summaries, sync
from batches.intake import job
from batches.models import Batch, Submission, Workspace
from dashboard.celery import app


def _tick_expiry() -> float:
    """A sync or ingestion that waited a whole tick in the queue is stale: the next tick sends
    a fresh one. So a worker that was down does not come back to a pile of repeats."""
    return settings.SYNC_INTERVAL_SECONDS


@app.task
def sync_all_workspaces() -> int:
    """The beat's tick: one sync task per workspace, so one slow or broken key stalls no other."""
    ids = list(Workspace.objects.values_list("pk", flat=True))
    for workspace_id in ids:
        sync_workspace.apply_async((workspace_id,), expires=_tick_expiry())
    return len(ids)


@app.task
def sync_workspace(workspace_id: int) -> str:
    report = sync.sync_workspace(workspace_id)
    for batch_id in report.to_ingest:
        ingest_results.apply_async((batch_id,), expires=_tick_expiry())
    if (
        Workspace.objects.filter(pk=workspace_id)
        .exclude(notify_email=False, notify_webhook_url="")
        .exists()
    ):
        for batch_id in notices.batches_to_announce(workspace_id):
            announce_batch_end.delay(batch_id)
    return str(report)


@app.task
def ingest_results(batch_id: int) -> dict:
    report = sync.ingest_results(batch_id)
    if report.stored and not report.error:
        summaries.store_totals(Batch.objects.filter(pk=batch_id))
    return {"stored": report.stored, "skipped": report.skipped, "error": report.error}


@app.task
def announce_batch_end(batch_id: int) -> dict:
    """The workspace's email and webhook for one ended batch, sent once."""
    return notices.announce(batch_id)


@app.task
def check_submission(submission_id: int) -> str:
    """Check an uploaded file in the background (see batches.intake.job)."""
    return job.run_check(submission_id)


@app.task
def resume_checks() -> int:
    """On the beat: hand out again the checks whose worker died or whose task was lost."""
    ids = list(Submission.objects.checks_to_resume(timezone.now()).values_list("pk", flat=True))
    for submission_id in ids:
        check_submission.delay(submission_id)
    return len(ids)


@app.task
def submit_submission(submission_id: int) -> str:
    """Create the batches of a submission that was moved to `submitting` (see submissions.py)."""
    return submissions.create_batches(submission_id).state


@app.task
def resume_submissions() -> int:
    """On the beat: hand out again the submit tasks that were lost (see SUBMIT_STALL)."""
    stalled = submissions.stalled_submissions(timezone.now())
    for submission_id in stalled:
        submit_submission.delay(submission_id)
    return len(stalled)
