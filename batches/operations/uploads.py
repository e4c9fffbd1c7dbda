"""Changes to uploads: store one (and check it), stop its check, submit it within its spend cap
and the workspace's budget, try some of its requests through the Messages API first."""

from collections.abc import Collection
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.db import transaction
from django.http import HttpRequest

from batches import audit, budgets, roles, submissions, tasks, trials
from batches.intake import job
from batches.models import AuditEntry, Submission, Trial, Workspace
from batches.operations import Refused, require
from batches.roles import Ability


def upload(
    workspace: Workspace,
    actor: AbstractBaseUser | None,
    uploaded_file: File,
    *,
    queue: bool = True,
    request: HttpRequest | None = None,
    **options: Any,
) -> Submission:
    """Store an upload; a JSONL file, or a CSV with its options, is checked by a worker once
    this commits (`queue` False: the caller checks it in the foreground, as `submitbatch`
    does). `options` are `submissions.create_submission`'s."""
    require(actor, workspace, Ability.SUBMIT)
    with transaction.atomic():
        submission = submissions.create_submission(workspace, actor, uploaded_file, **options)
        audit.record(
            AuditEntry.Action.UPLOAD,
            request=request,
            actor=actor,
            workspace=workspace,
            target=audit.upload_target(submission),
            after={"file": submission.source_filename, "bytes": submission.upload_size},
        )
        if submission.is_checking and queue:
            tasks.check_submission.delay_on_commit(submission.pk)
    return submission


def stop_check(
    submission: Submission, actor: AbstractBaseUser | None, *, request: HttpRequest | None = None
) -> bool:
    """Ask a running check to stop (nothing is kept of it); False when none runs."""
    require(actor, submission.workspace, Ability.SUBMIT)
    with transaction.atomic():
        if not job.request_stop(submission):
            return False
        audit.record(
            AuditEntry.Action.STOP_CHECK,
            request=request,
            actor=actor,
            workspace=submission.workspace,
            target=audit.upload_target(submission),
        )
    return True


def spending_refusal(
    actor: AbstractBaseUser | None,
    submission: Submission,
    spending: budgets.SpendCheck,
    *,
    confirmed: bool,
) -> str:
    """Why Submit may not go ahead for what the file could cost, or "": above the upload's own
    spend cap (never), or above what is left of the workspace's budget (only with an admin's
    explicit confirmation; `actor` None is an operator at the shell, who confirms with a flag)."""
    if not submission.estimate:
        return ""
    if spending.over_cap:
        return (
            f"This file could cost up to ${spending.estimate:,.2f}, above its spend cap of "
            f"${spending.cap:,.2f}: nothing was sent. Upload it again with a higher cap, or "
            "lower max_tokens."
        )
    if not spending.over_budget:
        return ""
    budget = spending.budget
    left = (
        f"nothing is left of the workspace's budget for {budget.month:%B} (over by "
        f"${budget.over_by:,.2f})"
        if budget.over_by
        else f"${budget.left_to_spend:,.2f} is left of the workspace's budget for {budget.month:%B}"
    )
    why = f"This file could cost up to ${spending.estimate:,.2f}, but {left}"
    if actor is not None and not roles.may(actor, submission.workspace, Ability.MANAGE):
        return f"{why}. A workspace admin must confirm going over the budget: ask one to submit it."
    if not confirmed:
        return f"{why}. Confirm going over the budget to submit it."
    return ""


def submit(
    submission: Submission,
    actor: AbstractBaseUser | None,
    *,
    valid_only: bool = False,
    confirm_over_budget: bool = False,
    queue: bool = True,
    request: HttpRequest | None = None,
) -> bool:
    """Submit a checked upload once, within its spend cap and its workspace's budget: True when
    this call started it (its batches are created by a worker once this commits), False when it
    cannot start now (already submitted, still checking, problems). Raises `Refused`. With
    `queue` False the caller creates the batches itself, in the foreground.

    The workspace's row is the budget's lock: the check of what is left and the commitment that
    spends it (the upload turning `submitting`, which `budgets.budget_status` counts at its most
    expensive outcome until its batches have a cost) happen in one transaction under it, so
    Submits at once are decided one after the other, each seeing the others' commitments."""
    require(actor, submission.workspace, Ability.SUBMIT)
    with transaction.atomic():
        workspace = Workspace.objects.select_for_update().get(pk=submission.workspace_id)
        submission.refresh_from_db()
        submission.workspace = workspace
        spending = budgets.spend_check(submission) if submission.estimate else None
        if spending is not None:
            refusal = spending_refusal(actor, submission, spending, confirmed=confirm_over_budget)
            if refusal:
                raise Refused(refusal)
        if not submissions.request_submit(submission, valid_only=valid_only):
            return False
        over_budget = spending is not None and spending.over_budget
        if over_budget and actor is not None:
            Submission.objects.filter(pk=submission.pk).update(over_budget_confirmed_by=actor)
        audit.record(
            AuditEntry.Action.SUBMIT,
            request=request,
            actor=actor,
            workspace=workspace,
            target=audit.upload_target(submission),
            after={
                "requests": submission.request_count,
                "valid_only": valid_only,
                "estimate": str(spending.estimate if spending else Decimal(0)),
                **({"over_budget": True} if over_budget else {}),
            },
        )
        if queue:
            tasks.submit_submission.delay_on_commit(submission.pk)
    submission.refresh_from_db()
    return True


def try_requests(
    submission: Submission,
    actor: AbstractBaseUser | None,
    *,
    count: int = 0,
    custom_ids: Collection[str] = (),
    request: HttpRequest | None = None,
) -> list[Trial]:
    """Send the first `count` requests, or these custom_ids, through the Messages API now,
    within the workspace's tries a day; each is sent by a worker once this commits."""
    require(actor, submission.workspace, Ability.SUBMIT)
    try:
        with transaction.atomic():
            made = trials.start(submission, actor, count=count, custom_ids=custom_ids)
            bounds = [trial.cost_at_most for trial in made if trial.cost_at_most is not None]
            audit.record(
                AuditEntry.Action.TRY,
                request=request,
                actor=actor,
                workspace=submission.workspace,
                target=audit.upload_target(submission),
                after={
                    "custom_ids": [trial.custom_id for trial in made],
                    "cost_at_most": (
                        str(sum(bounds, Decimal(0))) if len(bounds) == len(made) else None
                    ),
                },
            )
            for trial in made:
                tasks.send_trial.delay_on_commit(trial.pk)
    except trials.TryRefused as refusal:
        raise Refused(str(refusal)) from None
    return made
