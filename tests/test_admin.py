from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches import submissions
from batches.models import Batch, BatchRequest, Result, Submission, Workspace
from tests import factories

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def test_every_model_has_a_working_admin_that_never_shows_the_key(admin_client, workspace, user):
    data = (SAMPLES / "questions.jsonl").read_bytes()
    submission = submissions.create_submission(
        workspace, user, SimpleUploadedFile("questions.jsonl", data)
    )
    submissions.request_submit(submission)
    submissions.create_batches(submission.pk)
    for model in (Workspace, Batch, Result, Submission, BatchRequest):
        meta = model._meta
        listing = admin_client.get(f"/admin/{meta.app_label}/{meta.model_name}/")
        assert listing.status_code == 200, meta.model_name
        first = model.objects.first()
        if first is not None:
            page = admin_client.get(f"/admin/{meta.app_label}/{meta.model_name}/{first.pk}/change/")
            assert page.status_code == 200, meta.model_name
            assert workspace.api_key not in page.content.decode()


def test_staff_who_are_not_members_see_no_other_teams_records(client, workspace, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("auditor", password="pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="batches"))
    factories.batch(workspace, api_id="msgbatch_secret")
    other = Workspace.objects.create(name="Their Secret Project", slug="theirs",
                                     base_url="https://api.example.com")  # fmt: skip
    client.force_login(staff)
    assert b"msgbatch_secret" not in client.get("/admin/batches/batch/").content
    assert b"Research" not in client.get("/admin/batches/workspace/").content
    workspace.members.add(staff)
    for page in ("/admin/batches/batch/", "/admin/batches/submission/", "/admin/"):
        assert other.name.encode() not in client.get(page).content, page
    assert b"Research" in client.get("/admin/batches/batch/").content  # its own, in the filter
    workspace.members.remove(staff)
    workspace.members.add(staff)
    assert b"msgbatch_secret" in client.get("/admin/batches/batch/").content


def memberships_formset(workspace) -> dict:
    """The members inline of the workspace's change form, as the admin renders it."""
    memberships = list(workspace.memberships.all())
    count = len(memberships)
    form = {"memberships-TOTAL_FORMS": count, "memberships-INITIAL_FORMS": count,
            "memberships-MIN_NUM_FORMS": 0, "memberships-MAX_NUM_FORMS": 1000}  # fmt: skip
    for number, membership in enumerate(memberships):
        form |= {f"memberships-{number}-id": membership.pk,
                 f"memberships-{number}-workspace": workspace.pk,
                 f"memberships-{number}-user": membership.user_id,
                 f"memberships-{number}-role": membership.role}  # fmt: skip
    return form


def test_changing_the_api_address_needs_the_key_again(admin_client, workspace):
    url = f"/admin/batches/workspace/{workspace.pk}/change/"
    form = {"name": workspace.name, "slug": workspace.slug, "base_url": "https://evil.example",
            **memberships_formset(workspace)}  # fmt: skip
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert b"Enter the key again when the API base URL changes." in response.content
    workspace.refresh_from_db()
    assert workspace.base_url != "https://evil.example"
    assert admin_client.post(url, {**form, "api_key": "sk-ant-new-key-1234"}).status_code == 302
    workspace.refresh_from_db()
    assert workspace.base_url == "https://evil.example" and workspace.api_key.endswith("1234")


def test_no_admin_form_answers_500(admin_client, workspace, user):
    """Every list, add form (empty and filled with nonsense) and change form of every model."""
    from django.contrib import admin as site_admin

    data = (SAMPLES / "questions.jsonl").read_bytes()
    submissions.create_submission(workspace, user, SimpleUploadedFile("questions.jsonl", data))
    for model in site_admin.site._registry:
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        assert admin_client.get(base).status_code == 200, base
        add = admin_client.get(f"{base}add/")
        assert add.status_code in (200, 403), base
        if add.status_code == 200:
            for form in ({}, {"name": "x" * 500, "base_url": "not a url", "slug": "!!"}):
                assert admin_client.post(f"{base}add/", form).status_code in (200, 302), base
        first = model._default_manager.first()
        if first is not None:
            change = f"{base}{first.pk}/change/"
            assert admin_client.get(change).status_code == 200, change
            assert admin_client.post(change, {}).status_code in (200, 302, 403), change


def test_changes_made_in_the_admin_are_audited(admin_client, workspace, django_user_model):
    from batches.models import AuditEntry

    Workspace.objects.filter(pk=workspace.pk).update(base_url="https://api.anthropic.com")
    url = f"/admin/batches/workspace/{workspace.pk}/change/"
    form = {"name": workspace.name, "slug": workspace.slug, "base_url": "https://api.anthropic.com",
            "notify_email": "on", "results_downloadable": "on", "api_key": "sk-ant-admin-4321",
            **memberships_formset(workspace)}  # fmt: skip
    form["memberships-0-role"] = "viewer"  # the owner, first by username
    newcomer = django_user_model.objects.create_user("newcomer")
    form |= {"memberships-TOTAL_FORMS": 3, "memberships-2-user": newcomer.pk,
             "memberships-2-role": "admin", "memberships-2-workspace": workspace.pk}  # fmt: skip
    assert admin_client.post(url, form).status_code == 302
    log = {entry.action: entry for entry in AuditEntry.objects.exclude(action="login")}
    assert log["settings_change"].after == {"notify_email": True}
    assert log["key_change"].after["api_key"].endswith("4321")
    assert "sk-ant-admin-4321" not in str(log["key_change"].after)
    assert log["member_role"].before == {"role": "admin"}
    assert log["member_role"].after == {"role": "viewer"}
    assert log["member_add"].target == "member newcomer"


def test_the_admin_refuses_to_remove_or_demote_the_last_admin(admin_client, workspace, user):
    """The rule of the settings page and the `members` command holds in the Django admin too."""
    from batches.models import AuditEntry, Membership

    url = f"/admin/batches/workspace/{workspace.pk}/change/"
    base = {"name": workspace.name, "slug": workspace.slug, "base_url": workspace.base_url,
            "notify_email": "on", "results_downloadable": "on", "api_key": ""}  # fmt: skip
    owner = workspace.memberships.get(user=user)
    number = list(workspace.memberships.all()).index(owner)
    for change in (
        {f"memberships-{number}-DELETE": "on"},
        {f"memberships-{number}-role": "viewer"},
    ):
        answer = admin_client.post(url, base | memberships_formset(workspace) | change)
        assert answer.status_code == 200  # the form again, nothing saved
        assert "owner is the last admin of Research: make someone else an admin first." in (
            answer.content.decode()
        )
        owner.refresh_from_db()
        assert owner.role == Membership.Role.ADMIN
    assert not AuditEntry.objects.filter(action__startswith="member_").exists()


def test_deleting_a_workspace_in_the_admin_is_audited(admin_client, workspace):
    from batches.models import AuditEntry

    url = f"/admin/batches/workspace/{workspace.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    entry = AuditEntry.objects.get(action="workspace_delete")
    assert entry.workspace_id == workspace.pk and entry.workspace_name == "Research"


def test_the_add_form_asks_for_the_key_and_the_change_form_may_keep_it(admin_client, workspace):
    added = admin_client.get("/admin/batches/workspace/add/").content.decode()
    assert "Leave blank to keep the current key." not in added
    assert "The workspace's Anthropic API key (sk-ant-…); stored encrypted." in added
    assert "8000" not in added
    changed = admin_client.get(f"/admin/batches/workspace/{workspace.pk}/change/").content.decode()
    assert "Leave blank to keep the current key." in changed
