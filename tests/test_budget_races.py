"""Budgets under races: Submits at once are decided one after the other, under the workspace's
row lock, and an upload between Submit and its batches counts at its most expensive outcome.

These run real concurrent transactions (threads, each with its own database connection), so on
PostgreSQL they show the row lock at work, and on SQLite its one writer at a time."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from batches import budgets
from batches.models import AuditEntry, Submission, SubmissionPart
from batches.operations import Refused
from batches.operations import uploads as upload_operations
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def budgeted(workspace, amount: str):
    workspace.monthly_budget = Decimal(amount)
    workspace.save(update_fields=["monthly_budget"])


def checked_upload(workspace, user, cost: str, **fields) -> Submission:
    """A checked upload of one part (its batch not made yet) whose most expensive outcome is
    `cost`."""
    upload = factories.submission(
        workspace,
        user,
        state=Submission.State.READY,
        request_count=10,
        estimate={"input_cost": "0", "max_output_cost": cost},
        **fields,
    )
    SubmissionPart.objects.create(submission=upload, index=0, request_count=10, request_bytes=1)
    return upload


def submit_all_at_once(uploads, actor, **options) -> list[bool | str]:
    """Submit each upload from a thread of its own, all released at the same moment; each
    answer is True (started), False (not started) or the refusal's message."""
    start = threading.Barrier(len(uploads))
    answers: list[bool | str] = [False] * len(uploads)

    def run(index: int, upload: Submission) -> None:
        try:
            start.wait()
            answers[index] = upload_operations.submit(upload, actor, queue=False, **options)
        except Refused as refusal:
            answers[index] = str(refusal)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, upload)) for index, upload in enumerate(uploads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_it_commits_at_most_the_budget_when_twenty_submits_come_at_once(workspace, user):
    budgeted(workspace, "95.00")
    uploads = [checked_upload(workspace, user, "10.00") for _ in range(20)]

    answers = submit_all_at_once(uploads, user)

    started = [answer for answer in answers if answer is True]
    refused = [answer for answer in answers if isinstance(answer, str)]
    assert len(started) == 9 and len(refused) == 11
    assert all("left of the workspace's budget" in answer for answer in refused)
    status = budgets.budget_status(workspace)
    assert status.budget is not None and status.committed == Decimal("90.0000") <= status.budget
    assert Submission.objects.filter(state=Submission.State.SUBMITTING).count() == 9
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SUBMIT).count() == 9


def test_it_counts_an_upload_waiting_for_its_batches_at_its_most_expensive_outcome(workspace, user):
    budgeted(workspace, "100.00")
    waiting = checked_upload(workspace, user, "30.00")
    assert upload_operations.submit(waiting, user, queue=False)  # submitting: no batch exists yet

    status = budgets.budget_status(workspace)

    assert status.committed == Decimal("30.0000") and status.left == Decimal("70.0000")


def test_it_starts_one_upload_once_when_its_submit_comes_twenty_times_at_once(workspace, user):
    budgeted(workspace, "100.00")
    upload = checked_upload(workspace, user, "10.00")

    answers = submit_all_at_once([upload] * 20, user)

    assert answers.count(True) == 1 and answers.count(False) == 19
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SUBMIT).count() == 1


def test_it_holds_an_uploads_own_spend_cap_when_submits_come_at_once(workspace, user):
    over = checked_upload(workspace, user, "4.00", spend_cap=Decimal("3.00"))
    within = checked_upload(workspace, user, "2.00", spend_cap=Decimal("3.00"))

    answers = submit_all_at_once([over] * 10 + [within] * 10, user, confirm_over_budget=True)

    assert all(
        isinstance(answer, str) and "spend cap of $3.00" in answer for answer in answers[:10]
    )
    assert answers[10:].count(True) == 1
    over.refresh_from_db()
    assert over.state == Submission.State.READY
