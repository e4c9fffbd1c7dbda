"""Changes to one batch: cancel, delete (from the API, keeping the copy here or not), refresh
now, resubmit some of its requests, rename and label it; and a download of its results, which
changes nothing but is recorded as a change is."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest

from batches import actions, audit, labels, tasks
from batches.models import AuditEntry, Batch, Submission
from batches.operations import Refused, require
from batches.roles import Ability

# What each action is called in the audit log, and what the person must be.
AUDITED: dict[str, str] = {
    Batch.Action.CANCEL: AuditEntry.Action.CANCEL,
    Batch.Action.DELETE: AuditEntry.Action.DELETE,
    Batch.Action.REMOVE: AuditEntry.Action.DELETE,
    Batch.Action.REFRESH: AuditEntry.Action.REFRESH,
}
NEEDS: dict[str, Ability] = {
    Batch.Action.CANCEL: Ability.SUBMIT,
    Batch.Action.DELETE: Ability.DELETE,
    Batch.Action.REMOVE: Ability.DELETE,
    Batch.Action.REFRESH: Ability.SUBMIT,
}


def start_action(
    batch: Batch, action: str, actor: AbstractBaseUser | None, *, request: HttpRequest | None = None
) -> None:
    """Record a cancel, a delete or a refresh as pending on the batch, with who asked, and hand
    it to a worker once that commits; the page shows it pending until the API has answered."""
    require(actor, batch.workspace, NEEDS[action])
    try:
        with transaction.atomic():
            actions.request_action(batch, action, actor)
            removing = action in (Batch.Action.DELETE, Batch.Action.REMOVE)
            audit.record(
                AUDITED[action],
                request=request,
                actor=actor,
                workspace=batch.workspace,
                target=audit.batch_target(batch),
                after={"keep_local_copy": action == Batch.Action.DELETE} if removing else {},
            )
            tasks.run_batch_action.delay_on_commit(batch.pk)
    except actions.ActionRefused as refused:
        raise Refused(str(refused)) from None


def rename(
    batch: Batch,
    actor: AbstractBaseUser | None,
    name: str,
    chosen_labels: list[str],
    *,
    request: HttpRequest | None = None,
) -> bool:
    """A new name and labels for any batch (one made outside the dashboard too); False when
    nothing changed."""
    require(actor, batch.workspace, Ability.SUBMIT)
    before = {"name": batch.name, "labels": labels.names(batch)}
    after = {"name": name, "labels": chosen_labels}
    if before == after:
        return False
    with transaction.atomic():
        Batch.objects.filter(pk=batch.pk).update(name=name)
        batch.name = name
        labels.set_labels(batch, chosen_labels)
        audit.record(
            AuditEntry.Action.RENAME,
            request=request,
            actor=actor,
            workspace=batch.workspace,
            target=audit.batch_target(batch),
            before=before,
            after=after,
        )
    return True


def resubmit(
    batch: Batch,
    actor: AbstractBaseUser | None,
    kinds: list[str],
    *,
    request: HttpRequest | None = None,
) -> Submission:
    """A new upload of the batch's requests whose results are of the chosen kinds, checked
    once that commits; the person submits it from its page."""
    require(actor, batch.workspace, Ability.SUBMIT)
    try:
        with transaction.atomic():
            submission = actions.resubmit(batch, actor, kinds)
            audit.record(
                AuditEntry.Action.RESUBMIT,
                request=request,
                actor=actor,
                workspace=batch.workspace,
                target=audit.batch_target(batch),
                after={
                    "kinds": sorted(set(kinds) & set(actions.RESUBMIT_KINDS)),
                    "upload": str(submission.key),
                },
            )
            tasks.check_submission.delay_on_commit(submission.pk)
    except (actions.ActionRefused, ValueError) as refused:
        raise Refused(str(refused)) from None
    return submission


def record_download(
    batch: Batch,
    actor: AbstractBaseUser | None,
    file: str,
    *,
    via: str = "",
    request: HttpRequest | None = None,
) -> None:
    """Results leaving the dashboard: who took which file of which batch (`via` a command)."""
    require(actor, batch.workspace, Ability.DOWNLOAD)
    audit.record(
        AuditEntry.Action.DOWNLOAD,
        request=request,
        actor=actor,
        workspace=batch.workspace,
        target=audit.batch_target(batch),
        after={"file": file, **({"from": via} if via else {})},
    )
