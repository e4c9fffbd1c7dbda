"""What a URL names, found among what the person asking may see (404 otherwise), and what
their role in its workspace lets them do with it (403 with the reason otherwise)."""

from uuid import UUID

from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, QueryDict
from django.shortcuts import get_object_or_404

from batches import roles
from batches.models import Batch, Result, Submission, Workspace
from batches.roles import Ability


class AuthenticatedHttpRequest(HttpRequest):
    """A request to a page behind the login, which is every page but those marked
    `login_not_required` (LoginRequiredMiddleware): its user is a signed-in User, never the
    anonymous one. A type for the checker only (django-stubs' way); Django passes its own
    request."""

    user: User


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise Http404  # PostgreSQL refuses NUL in a string: no such row, not a 500
    return value


def workspace_for(request: HttpRequest, slug: str, need: Ability = Ability.VIEW) -> Workspace:
    workspace = get_object_or_404(Workspace.objects.visible_to(request.user), slug=slug)
    roles.require(request.user, workspace, need)
    return workspace


def batch_for(request: HttpRequest, slug: str, api_id: str, need: Ability = Ability.VIEW) -> Batch:
    batches = Batch.objects.visible_to(request.user).select_related(
        "workspace", "submitted_by", "canceled_by", "deleted_by", "submission", "submission_part"
    )
    batch = get_object_or_404(batches, workspace__slug=slug, api_id=_no_nul(api_id))
    roles.require(request.user, batch.workspace, need)
    return batch


def result_for(batch: Batch, custom_id: str) -> Result:
    return get_object_or_404(Result, batch=batch, custom_id=_no_nul(custom_id))


def submission_for(
    request: HttpRequest, slug: str, key: UUID, need: Ability = Ability.VIEW
) -> Submission:
    workspace = workspace_for(request, slug, need)
    return get_object_or_404(
        Submission.objects.select_related("workspace", "created_by", "resubmission_of"),
        workspace=workspace,
        key=key,
    )


def query_text(params: QueryDict, name: str, limit: int = 200) -> str:
    """A query-string value as plain text: no NUL (PostgreSQL refuses it), at most `limit` long."""
    return params.get(name, "").replace("\x00", "").strip()[:limit]


def poll_key(
    request: HttpRequest, region: str, slug: str | None = None, *, always: bool = False
) -> tuple | None:
    """The key a polled region's fingerprint is remembered under (see batches/polling.py),
    found without a query: the stamps of the workspace `slug` names, or of every workspace the
    person sees. None for a page load (unless `always`), or when the cache cannot say."""
    from batches import polling, selectors

    if not always and not polling.is_fragment(request):
        return None
    visible = selectors.visible_workspace_ids(request.user)
    if visible is None or (slug is not None and slug not in visible):
        return None
    ids = [visible[slug]] if slug is not None else sorted(visible.values())
    return polling.region_key(request, region, ids)
