"""Small helpers for tests that stand in for a process the test does not start."""

from batches.intake import job
from batches.models import Submission


def run_checks() -> list[str]:
    """What a worker does after an upload: run every pending check, here in the test."""
    pending = Submission.objects.filter(state=Submission.State.CHECKING)
    return [job.run_check(pk) for pk in list(pending.values_list("pk", flat=True))]
