"""A workspace's own settings pages, for its admins: the API address and key, notices and
downloads, the members and their roles (add, invite, change, remove), and the audit log.

Every change is written to the audit log with its before and after (a key only as its masked
hint). The last admin of a workspace cannot be removed or made something else.
"""

import csv
from collections.abc import Iterator
from datetime import datetime, time

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from batches import roles, webhooks
from batches.forms import (
    AddMemberForm,
    AuditFilterForm,
    ConnectionForm,
    InviteForm,
    RoleForm,
    WorkspaceOptionsForm,
)
from batches.models import AuditEntry, Membership, WebhookDelivery, Workspace
from batches.operations import Refused
from batches.operations import members as member_operations
from batches.operations import workspaces as workspace_operations
from batches.roles import Ability
from batches.spreadsheets import safe_cell
from batches.views.access import AuthenticatedHttpRequest, workspace_for

Action = AuditEntry.Action
SETTINGS = "batches/workspace_settings.html"
AUDIT = "batches/workspace_audit.html"
AUDIT_PAGE = 50


def _settings_page(
    request: HttpRequest,
    workspace: Workspace,
    *,
    status: int = 200,
    new_secret: str = "",
    **forms: BaseForm,
) -> HttpResponse:
    members = workspace.memberships.select_related("user").order_by("user__username").all()
    context = {
        "workspace": workspace,
        "connection_form": forms.get("connection_form") or ConnectionForm(workspace=workspace),
        "options_form": forms.get("options_form") or WorkspaceOptionsForm(instance=workspace),
        "add_form": forms.get("add_form") or AddMemberForm(workspace=workspace),
        "invite_form": forms.get("invite_form") or InviteForm(),
        "memberships": members,
        "roles": Membership.Role.choices,
        "admin_count": sum(1 for member in members if member.role == Membership.Role.ADMIN),
        "deliveries": webhooks.recent(workspace),
        # Shown once, on this answer only: never stored in a message or a cookie.
        "new_secret": new_secret,
    }
    return render(request, SETTINGS, context, status=status)


@require_GET
def workspace_settings(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    return _settings_page(request, workspace_for(request, slug, Ability.MANAGE))


@sensitive_post_parameters("api_key")
@require_POST
def workspace_connection(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    form = ConnectionForm(request.POST, workspace=workspace)
    if not form.is_valid():
        return _settings_page(request, workspace, status=400, connection_form=form)
    workspace_operations.change_connection(
        workspace,
        request.user,
        form.cleaned_data["base_url"],
        form.cleaned_data["api_key"],
        request=request,
    )
    messages.success(request, "The API answered: the new connection is saved.")
    return redirect("workspace_settings", workspace.slug)


@require_POST
def workspace_options(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    form = WorkspaceOptionsForm(request.POST, instance=Workspace.objects.get(pk=workspace.pk))
    if not form.is_valid():
        return _settings_page(request, workspace, status=400, options_form=form)
    changed, new_secret = workspace_operations.change_options(
        workspace,
        request.user,
        {name: form.cleaned_data[name] for name in workspace_operations.OPTION_FIELDS},
        request=request,
    )
    if new_secret:
        messages.success(request, "Saved. Copy the webhook's signing secret now.")
        return _settings_page(request, workspace, new_secret=new_secret)
    messages.success(request, "Saved." if changed else "Nothing changed.")
    return redirect("workspace_settings", workspace.slug)


@require_POST
def webhook_secret(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """A new signing secret for the webhook, shown once (the old one stops working)."""
    workspace = workspace_for(request, slug, Ability.MANAGE)
    try:
        secret = workspace_operations.new_webhook_secret(workspace, request.user, request=request)
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect("workspace_settings", workspace.slug)
    messages.success(request, "A new signing secret: copy it now. The old one no longer signs.")
    return _settings_page(request, workspace, new_secret=secret)


@require_POST
def webhook_replay(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    delivery = get_object_or_404(WebhookDelivery, workspace=workspace, pk=pk)
    try:
        workspace_operations.replay_webhook(delivery, request.user, request=request)
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect(reverse("workspace_settings", args=[workspace.slug]) + "#webhooks")
    messages.info(request, f"Sending {delivery.get_event_display().lower()} again.")
    return redirect(reverse("workspace_settings", args=[workspace.slug]) + "#webhooks")


@require_POST
def member_add(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    form = AddMemberForm(request.POST, workspace=workspace)
    if not form.is_valid():
        return _settings_page(request, workspace, status=400, add_form=form)
    user, role = form.cleaned_data["who"], form.cleaned_data["role"]
    try:
        member_operations.add_member(workspace, request.user, user, role, request=request)
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect("workspace_settings", workspace.slug)
    messages.success(request, f"{user.get_username()} is now a {role} of {workspace.name}.")
    return redirect("workspace_settings", workspace.slug)


@require_POST
def member_invite(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, workspace, status=400, invite_form=form)
    email, role = form.cleaned_data["email"], form.cleaned_data["role"]
    user = member_operations.invite(workspace, request.user, email, role, request=request)
    messages.success(
        request,
        f"Invited {email} as {role}: they get an email with a link to set their password "
        f"(their login is {user.get_username()}).",
    )
    return redirect("workspace_settings", workspace.slug)


def _membership(workspace: Workspace, pk: int) -> Membership:
    return get_object_or_404(workspace.memberships.select_related("user"), pk=pk)


@require_POST
def member_role(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    membership = _membership(workspace, pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose viewer, submitter or admin.")
        return redirect("workspace_settings", workspace.slug)
    role = form.cleaned_data["role"]
    name = membership.user.get_username()
    try:
        changed = member_operations.change_role(membership, request.user, role, request=request)
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect("workspace_settings", workspace.slug)
    if not changed:
        messages.info(request, f"{name} is already a {role}.")
        return redirect("workspace_settings", workspace.slug)
    messages.success(request, f"{name} is now a {role}.")
    if not roles.may(request.user, workspace, Ability.MANAGE):
        return redirect(workspace)  # they made themselves something less than admin
    return redirect("workspace_settings", workspace.slug)


@require_POST
def member_remove(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    membership = _membership(workspace, pk)
    name = membership.user.get_username()
    try:
        member_operations.remove_member(membership, request.user, request=request)
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect("workspace_settings", workspace.slug)
    messages.success(request, f"{name} is no longer a member of {workspace.name}.")
    if not roles.may(request.user, workspace, Ability.VIEW):
        return redirect("home")
    if not roles.may(request.user, workspace, Ability.MANAGE):
        return redirect(workspace)
    return redirect("workspace_settings", workspace.slug)


# The audit log ----------------------------------------------------------------------------------


def _audit_entries(workspace: Workspace, form: AuditFilterForm) -> QuerySet[AuditEntry]:
    """The workspace's entries, and its members' own (logins, failed logins under their names,
    passwords set), which belong to no workspace."""
    own = Q(workspace_id=workspace.pk)
    # A member's own entries count only from when they joined: adding someone does not show
    # their history from before.
    for user_id, username, joined in workspace.memberships.values_list(
        "user_id", "user__username", "added_at"
    ):
        own |= Q(workspace_id=None, at__gte=joined) & (
            Q(actor_id=user_id) | Q(action=Action.LOGIN_FAILED, actor_name=username)
        )
    entries = AuditEntry.objects.filter(own)
    if not form.is_valid():
        return entries
    chosen = form.cleaned_data
    if chosen["person"]:
        entries = entries.filter(actor_name=chosen["person"].replace("\x00", ""))
    if chosen["action"]:
        entries = entries.filter(action=chosen["action"])
    zone = timezone.get_current_timezone()
    if chosen["since"]:
        entries = entries.filter(at__gte=datetime.combine(chosen["since"], time.min, zone))
    if chosen["until"]:
        entries = entries.filter(at__lte=datetime.combine(chosen["until"], time.max, zone))
    return entries


@require_GET
def workspace_audit(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug, Ability.MANAGE)
    form = AuditFilterForm(request.GET or None)
    entries = _audit_entries(workspace, form)
    page = Paginator(entries, AUDIT_PAGE).get_page(request.GET.get("page"))
    people = (
        _audit_entries(workspace, AuditFilterForm())
        .exclude(actor_name="")
        .order_by("actor_name")
        .values_list("actor_name", flat=True)
        .distinct()
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        AUDIT,
        {
            "workspace": workspace,
            "form": form,
            "page": page,
            "people": list(people[:200]),
            "query": query.urlencode(),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


AUDIT_COLUMNS = ["at", "person", "action", "target", "address", "before", "after"]


@require_GET
def workspace_audit_csv(request: AuthenticatedHttpRequest, slug: str) -> StreamingHttpResponse:
    """The filtered audit log as CSV, streamed; cells that a spreadsheet would run as a formula
    are written as text."""
    import orjson

    workspace = workspace_for(request, slug, Ability.MANAGE)
    entries = _audit_entries(workspace, AuditFilterForm(request.GET or None))
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield "\ufeff" + writer.writerow(AUDIT_COLUMNS)
        for entry in entries.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    entry.at.isoformat(),
                    safe_cell(entry.actor_label),
                    entry.action,
                    safe_cell(entry.target),
                    entry.address or "",
                    safe_cell(orjson.dumps(entry.before).decode()) if entry.before else "",
                    safe_cell(orjson.dumps(entry.after).decode()) if entry.after else "",
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{workspace.slug}-audit.csv"'
    return response
