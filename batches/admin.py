from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import ForeignKey, Model, QuerySet
from django.db.models.fields.related import RelatedField
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from batches import roles
from batches.models import (
    AuditEntry,
    Batch,
    BatchRequest,
    Membership,
    Result,
    Submission,
    SubmissionPart,
    Workspace,
)
from batches.operations import members as member_operations
from batches.operations import workspaces as workspace_operations
from foundations.errors import remember_secret

if TYPE_CHECKING:  # the stubs' alias, not installed with the site
    from django_stubs_ext import StrOrPromise


def _actor(request: HttpRequest) -> User:
    """The person using the admin: a signed-in User, since the admin site lets in only active
    staff (AdminSite.has_permission), which request.user's type cannot say."""
    return cast(User, request.user)


class WorkspaceForm(forms.ModelForm):
    # Write-only: the stored key is never sent back to the browser, only its hint is shown.
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave blank to keep the current key.",
    )

    class Meta:
        model = Workspace
        fields = [
            "name",
            "slug",
            "base_url",
            "notify_email",
            "notify_webhook_url",
            "results_downloadable",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance.pk:  # nothing is kept yet: a new workspace's key is required
            key = self.fields["api_key"]
            key.required = True
            key.help_text = "The workspace's Anthropic API key (sk-ant-…); stored encrypted."

    @sensitive_variables("cleaned")
    def clean(self) -> dict[str, Any]:
        # ModelForm.clean returns cleaned_data; the stubs allow the None a subclass may return.
        super().clean()
        cleaned = self.cleaned_data
        remember_secret(cleaned.get("api_key") or "")  # hidden from error reports from here on
        if not self.instance.pk and not cleaned.get("api_key"):
            self.add_error("api_key", "A new workspace needs an API key.")
        elif "base_url" in self.changed_data and not cleaned.get("api_key"):
            # Otherwise the stored key would be sent to whatever host the new address names.
            self.add_error("api_key", "Enter the key again when the API base URL changes.")
        return cleaned

    @sensitive_variables()
    def save(self, commit: bool = True) -> Workspace:
        if self.cleaned_data.get("api_key"):
            self.instance.set_api_key(self.cleaned_data["api_key"])
        return super().save(commit)


class MemberWorkspaceFilter(admin.RelatedFieldListFilter):
    """The workspace filter of a list, offering only the viewer's own workspaces."""

    def field_choices(
        self,
        field: "RelatedField[Any, Any]",
        request: HttpRequest,
        model_admin: "admin.ModelAdmin[Any]",
    ) -> "list[tuple[str, StrOrPromise]]":
        if request.user.is_superuser:
            return super().field_choices(field, request, model_admin)
        # Without the blank choice, get_choices gives a plain list of (value, label) pairs; the
        # stubs type it as any field's choices (grouped ones, or the blank choice's iterator).
        return field.get_choices(  # type: ignore[return-value]
            include_blank=False,
            limit_choices_to={"members": request.user},
            ordering=("name",),
        )


class MembersOnly(admin.ModelAdmin):
    """Staff who are not superusers see in the admin what the pages show them: their own
    workspaces' records and names, and no other team's prompts or answers. A ModelAdmin (never
    registered itself), so the methods it overrides are there to call."""

    members_path = "workspace__members"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{self.members_path: request.user}).distinct()

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> "forms.ModelChoiceField[Any] | None":
        if db_field.related_model is Workspace and not request.user.is_superuser:
            kwargs["queryset"] = Workspace.objects.filter(members=_actor(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MembershipFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        """Never the last admin removed or made less than admin (the rule of
        operations.members, checked here so the page says it before anything is saved)."""
        super().clean()
        if self.instance.pk is None:
            return
        leaving: list[int] = []
        joining = 0
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if not data:
                continue
            stays_admin = not data.get("DELETE") and data.get("role") == Membership.Role.ADMIN
            if form.instance.pk and not stays_admin:
                leaving.append(form.instance.pk)
            elif not form.instance.pk and form.has_changed() and stays_admin:
                joining += 1
        refusal = member_operations.last_admin_refusal(self.instance, leaving, joining)
        if refusal:
            raise forms.ValidationError(refusal)


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    fields = ["user", "role"]
    autocomplete_fields = ["user"]
    extra = 0


@admin.register(Workspace)
class WorkspaceAdmin(MembersOnly, admin.ModelAdmin):
    """Workspaces for the site's staff; a workspace's own admins have its settings pages too.
    Staff who are only viewers or submitters of a workspace may look but not change it."""

    members_path = "members"
    form = WorkspaceForm
    list_display = ["name", "base_url", "api_key_hint", "last_synced_at", "last_sync_error"]
    readonly_fields = ["api_key_hint", "is_sandbox", "last_synced_at", "last_sync_error"]
    inlines = [MembershipInline]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "base_url", "api_key", "api_key_hint", "is_sandbox"]}),
        ("Notices", {"fields": ["notify_email", "notify_webhook_url"]}),
        ("Results", {"fields": ["results_downloadable"]}),
        ("Sync", {"fields": ["last_synced_at", "last_sync_error"]}),
    ]

    # The key typed into the form is kept out of error reports, as on the Settings page.
    @method_decorator(sensitive_post_parameters("api_key"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def has_change_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        if obj is not None and not roles.may(request.user, obj, roles.Ability.MANAGE):
            return False
        return super().has_change_permission(request, obj)

    # Changes made here go through the same change functions as the settings pages'.
    def save_model(
        self, request: HttpRequest, obj: Workspace, form: WorkspaceForm, change: bool
    ) -> None:
        workspace_operations.save_from_admin(
            obj,
            _actor(request),
            created=not change,
            key_changed=bool(form.cleaned_data.get("api_key")),
            save=lambda: super(WorkspaceAdmin, self).save_model(request, obj, form, change),
            request=request,
        )

    def delete_model(self, request: HttpRequest, obj: Workspace) -> None:
        workspace_operations.delete(obj, _actor(request), where="admin", request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Workspace]) -> None:
        for workspace in queryset:
            workspace_operations.delete(workspace, _actor(request), where="admin", request=request)

    def save_formset(
        self,
        request: HttpRequest,
        form: WorkspaceForm,
        formset: MembershipFormSet,
        change: bool,
    ) -> None:
        """Each membership added, changed or removed here is a change function's (the last
        admin is kept by the formset's own check, before anything is saved)."""
        workspace = form.instance
        # What Django's own formset.save() would leave for the admin's history message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        deleting = list(formset.deleted_forms)
        # Additions first, then role changes, then removals: an admin made here counts before
        # another one steps down.
        kept = [form for form in formset.forms if form not in deleting]
        for membership_form in kept:
            if membership_form.instance.pk is None and membership_form.has_changed():
                formset.new_objects.append(
                    member_operations.add_member(
                        workspace,
                        _actor(request),
                        membership_form.cleaned_data["user"],
                        membership_form.cleaned_data["role"],
                        request=request,
                    )
                )
        for membership_form in kept:
            membership = membership_form.instance
            if membership.pk and "role" in membership_form.changed_data:
                role = membership_form.cleaned_data["role"]
                member_operations.change_role(membership, _actor(request), role, request=request)
                formset.changed_objects.append((membership, ["role"]))
        for membership_form in deleting:
            if membership_form.instance.pk:
                member_operations.remove_member(
                    membership_form.instance, _actor(request), request=request
                )
                formset.deleted_objects.append(membership_form.instance)

    def has_delete_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        if obj is not None and not roles.may(request.user, obj, roles.Ability.MANAGE):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Batch)
class BatchAdmin(MembersOnly, admin.ModelAdmin):
    list_display = [
        "api_id",
        "name",
        "workspace",
        "processing_status",
        "succeeded",
        "errored",
        "created_at",
        "results_ingested_at",
        "gone_at",
    ]
    list_filter = [("workspace", MemberWorkspaceFilter), "processing_status"]
    search_fields = ["api_id", "name"]
    list_select_related = ["workspace"]
    readonly_fields = [
        field.name
        for field in Batch._meta.get_fields()
        if getattr(field, "concrete", False) and field.name not in {"id", "name"}
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches come from the API: created there, mirrored here


@admin.register(Result)
class ResultAdmin(MembersOnly, admin.ModelAdmin):
    members_path = "batch__workspace__members"

    list_display = ["custom_id", "batch", "result_type", "error_type", "stop_reason"]
    list_filter = ["result_type", "error_type"]
    search_fields = ["custom_id", "batch__api_id"]
    list_select_related = ["batch"]
    raw_id_fields = ["batch"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Result | None = None) -> bool:
        return False


# A part's fields, all shown and all read-only: a tuple, which both attributes' types accept.
PART_FIELDS = ("index", "request_count", "request_bytes", "batch", "create_attempts", "error")


class SubmissionPartInline(admin.TabularInline):
    model = SubmissionPart
    fields = PART_FIELDS
    readonly_fields = PART_FIELDS
    extra = 0
    can_delete = False


@admin.register(Submission)
class SubmissionAdmin(MembersOnly, admin.ModelAdmin):
    """Uploads, for support: what was checked and sent. Changes go through the pages."""

    list_display = ["display_name", "workspace", "created_by", "state", "request_count",
                    "problem_count", "created_at"]  # fmt: skip
    list_filter = [("workspace", MemberWorkspaceFilter), "state", "source_format"]
    search_fields = ["name", "source_filename", "key"]
    list_select_related = ["workspace", "created_by"]
    inlines = [SubmissionPartInline]
    exclude = ["problems", "estimate", "csv_options", "models_used", "preview", "notes"]

    def get_readonly_fields(self, request: HttpRequest, obj: Submission | None = None) -> list[str]:
        return [field.name for field in Submission._meta.fields if field.name not in self.exclude]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(BatchRequest)
class BatchRequestAdmin(MembersOnly, admin.ModelAdmin):
    members_path = "submission__workspace__members"

    list_display = ["custom_id", "submission", "part", "line"]
    search_fields = ["custom_id", "submission__key"]
    list_select_related = ["submission"]
    raw_id_fields = ["submission"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: BatchRequest | None = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read-only for everyone: nobody adds, changes or deletes an entry here."""

    list_display = ["at", "actor_label", "action", "workspace_name", "target", "address"]
    list_filter = ["action"]
    search_fields = ["actor_name", "workspace_name", "target"]
    date_hierarchy = "at"
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        # A workspace's admins see its entries (and their own) on its audit page; staff here see
        # the entries of the workspaces they administer.
        administered = Membership.objects.filter(
            user=_actor(request), role=Membership.Role.ADMIN
        ).values("workspace_id")
        return queryset.filter(workspace_id__in=administered)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False
