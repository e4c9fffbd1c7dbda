"""Celery tasks: thin doors into the mirror, ingestion, intake, submissions, actions and notices.
They take ids, never model instances, and return what a log line needs (results are ignored)."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from batches import (
    actions,
    ingestion,
    invitations,
    mirror,
    notices,
    search,
    submissions,
    trials,
    webhooks,
)
from batches.intake import job
from batches.models import Submission, Workspace


def _tick_expiry() -> float:
    """A sync or ingestion that waited a whole tick in the queue is stale: the next tick sends
    a fresh one. So a worker that was down does not come back to a pile of repeats."""
    return settings.SYNC_INTERVAL_SECONDS


@shared_task
def sync_all_workspaces() -> int:
    """The beat's tick: one sync task per workspace, so one slow or broken key stalls no other."""
    ids = list(Workspace.objects.values_list("pk", flat=True))
    for workspace_pk in ids:
        sync_workspace.apply_async((workspace_pk,), expires=_tick_expiry())
    return len(ids)


@shared_task
def sync_workspace(workspace_pk: int) -> str:
    report = mirror.sync_workspace(workspace_pk)
    for batch_pk in report.to_ingest:
        ingest_results.apply_async((batch_pk,), expires=_tick_expiry())
    if (
        Workspace.objects.filter(pk=workspace_pk)
        .exclude(notify_email=False, notify_webhook_url="")
        .exists()
    ):
        for batch_pk in notices.batches_to_announce(workspace_pk):
            announce_batch_end.delay(batch_pk)
    return str(report)


@shared_task
def ingest_results(batch_pk: int) -> dict:
    report = ingestion.ingest_results(batch_pk)
    if report.stored and not report.error:
        if search.supported():
            index_results_for_search.delay(batch_pk)
        if Workspace.objects.filter(batches=batch_pk).exclude(notify_webhook_url="").exists():
            announce_results.delay(batch_pk)
        budgeted = Workspace.objects.filter(batches=batch_pk, monthly_budget__isnull=False)
        for workspace_pk in budgeted.values_list("pk", flat=True):
            announce_budget.delay(workspace_pk)
    return {"stored": report.stored, "skipped": report.skipped, "error": report.error}


@shared_task
def index_results_for_search(batch_pk: int) -> int:
    return search.index_results(batch_pk)


@shared_task
def send_trial(trial_pk: int) -> str:
    """One request of a checked upload through the Messages API ("Try first")."""
    return trials.send(trial_pk)


@shared_task
def announce_batch_end(batch_pk: int) -> dict:
    """The workspace's email and webhook for one ended batch, sent once."""
    return notices.announce(batch_pk)


@shared_task
def announce_results(batch_pk: int) -> bool:
    return notices.announce_results(batch_pk)


@shared_task
def announce_budget(workspace_pk: int) -> list[int]:
    """The workspace's notices of its budget reaching 80% or 100% this month, each once."""
    return notices.announce_budget(workspace_pk)


@shared_task
def send_invitation(user_pk: int, workspace_pk: int, inviter_pk: int | None) -> bool:
    return invitations.send_invitation(user_pk, workspace_pk, inviter_pk)


@shared_task
def send_password_reset(user_pk: int | None) -> bool:
    return invitations.send_password_reset(user_pk)


@shared_task
def deliver_webhook(delivery_pk: int) -> str:
    return webhooks.deliver(delivery_pk)


@shared_task
def retry_webhooks() -> int:
    """The beat's sweep: every webhook delivery whose next attempt is due."""
    due = webhooks.due()
    for delivery_pk in due:
        deliver_webhook.apply_async((delivery_pk,), expires=30.0)
    return len(due)


@shared_task
def check_submission(submission_pk: int) -> str:
    """Check an uploaded file in the background (see batches.intake.job)."""
    return job.run_check(submission_pk)


@shared_task
def resume_checks() -> int:
    """On the beat: hand out again the checks whose worker died or whose task was lost."""
    ids = list(Submission.objects.checks_to_resume(timezone.now()).values_list("pk", flat=True))
    for submission_pk in ids:
        check_submission.delay(submission_pk)
    return len(ids)


@shared_task
def submit_submission(submission_pk: int) -> str:
    """Create the batches of a submission that was moved to `submitting` (see submissions.py)."""
    return submissions.create_batches(submission_pk).state


@shared_task
def resume_submissions() -> int:
    """On the beat: hand out again the submit tasks that were lost (see SUBMIT_STALL)."""
    stalled = submissions.stalled_submissions(timezone.now())
    for submission_pk in stalled:
        submit_submission.delay(submission_pk)
    return len(stalled)


@shared_task
def run_batch_action(batch_pk: int) -> str:
    """Cancel, delete or refresh a batch, as a person asked (see batches.actions)."""
    outcome = actions.run_action(batch_pk)
    if outcome.fetch_results:
        ingest_results.delay(batch_pk)
    return outcome.error or outcome.action or "nothing pending"


@shared_task
def resume_actions() -> int:
    """On the beat: hand out again the batch actions whose task was lost."""
    stalled = actions.stalled_actions(timezone.now())
    for batch_pk in stalled:
        run_batch_action.delay(batch_pk)
    return len(stalled)
