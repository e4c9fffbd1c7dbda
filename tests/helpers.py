"""Small helpers for tests that stand in for a process the test does not start."""

from batches import actions, ingestion
from batches.intake import job
from batches.models import Batch, Submission


def run_checks() -> list[str]:
    """What a worker does after an upload: run every pending check, here in the test."""
    pending = Submission.objects.filter(state=Submission.State.CHECKING)
    return [job.run_check(pk) for pk in list(pending.values_list("pk", flat=True))]


def run_actions() -> list[str]:
    """What a worker does after a cancel, delete or refresh: carry out every pending action
    (and fetch the results a refresh found missing)."""
    done = []
    for pk in list(Batch.objects.exclude(pending_action="").values_list("pk", flat=True)):
        outcome = actions.run_action(pk)
        if outcome.fetch_results:
            ingestion.ingest_results(pk)
        done.append(outcome.error or outcome.action)
    return done
