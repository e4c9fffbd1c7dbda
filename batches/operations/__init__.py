"""One function per change a person or the system makes (Zulip's `do_*`, in this house's words).

Each takes the acting person (None: the system, or an operator at the shell), checks its rule
(role, last admin, budget, state), writes the change and its audit entry in one transaction,
and queues its task once that commits. Views, the admin, commands and tasks call these and do
nothing else of their own: a rule written once cannot drift between doors. `audit.record` is
called from here (and for the system's own findings, from the mirror and the login signals),
nowhere else; `tests/test_layout.py` holds that.

- `batches`: cancel, delete, refresh, resubmit, rename, a download recorded
- `uploads`: upload, stop a check, submit (within the spend cap and the budget), try requests
- `members`: add, change a role, remove (never the last admin), invite
- `workspaces`: create, the connection (key, base URL), settings, the webhook's secret and
  replays, delete
- `accounts`: a password set from a link
"""

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied

from batches import roles
from batches.models import Workspace


class Refused(Exception):
    """The change does not apply as things are; the message says why and what to do."""


def require(actor: AbstractBaseUser | None, workspace: Workspace, ability: roles.Ability) -> None:
    """The person may do this in the workspace (the views checked already; the admin and the
    shell may not have). `actor` None is the system or an operator at the shell."""
    if actor is not None and not roles.may(actor, workspace, ability):
        raise PermissionDenied(f"You may not do this in {workspace.name}.")
