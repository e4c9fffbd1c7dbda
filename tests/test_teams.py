"""A workspace's settings pages, invitations, password resets, attribution and the audit log."""

import csv
import io
import re
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from batches import audit
from batches.models import AuditEntry, Batch, Membership, Workspace
from tests import factories

# Emails are sent by tasks: here they run at once, so each test reads the email it caused.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_at_once")]
Action = AuditEntry.Action


def settings_url(workspace, name="workspace_settings", *args):
    return reverse(name, args=[workspace.slug, *args])


def entries(action):
    return list(AuditEntry.objects.filter(action=action))


def actions():
    """The audit log's actions in order, but the logins of the test clients."""
    return [e.action for e in AuditEntry.objects.exclude(action=Action.LOGIN).order_by("pk")]


# Members ----------------------------------------------------------------------------------------


def test_an_admin_adds_changes_and_removes_members_and_each_change_is_audited(
    owner_client, workspace, django_user_model
):
    django_user_model.objects.create_user("grace", email="grace@example.com")
    response = owner_client.post(
        settings_url(workspace, "member_add"), {"who": "grace@example.com", "role": "viewer"}
    )
    assert response.status_code == 302
    membership = Membership.objects.get(workspace=workspace, user__username="grace")
    assert membership.role == "viewer"
    owner_client.post(settings_url(workspace, "member_role", membership.pk), {"role": "admin"})
    membership.refresh_from_db()
    assert membership.role == "admin"
    owner_client.post(settings_url(workspace, "member_remove", membership.pk))
    assert not Membership.objects.filter(pk=membership.pk).exists()
    log = list(
        AuditEntry.objects.filter(workspace_id=workspace.pk)
        .exclude(action=Action.LOGIN)
        .order_by("pk")
    )
    assert [(e.action, e.target, e.before, e.after) for e in log] == [
        (Action.MEMBER_ADD, "member grace", {}, {"role": "viewer"}),
        (Action.MEMBER_ROLE, "member grace", {"role": "viewer"}, {"role": "admin"}),
        (Action.MEMBER_REMOVE, "member grace", {"role": "admin"}, {}),
    ]
    assert {entry.actor_name for entry in log} == {"owner"}
    assert {entry.address for entry in log} == {"127.0.0.1"}


def test_adding_someone_unknown_or_twice_says_what_to_do(owner_client, workspace):
    response = owner_client.post(
        settings_url(workspace, "member_add"), {"who": "nobody", "role": "viewer"}
    )
    assert response.status_code == 400
    assert "No one with the login or email “nobody”" in response.content.decode()
    response = owner_client.post(
        settings_url(workspace, "member_add"), {"who": "teammate", "role": "viewer"}
    )
    assert "teammate is already a member." in response.content.decode()
    response = owner_client.post(
        settings_url(workspace, "member_add"), {"who": "x\x00y", "role": "boss"}
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


def test_the_last_admin_can_be_neither_removed_nor_demoted(owner_client, workspace, user):
    own = Membership.objects.get(workspace=workspace, user=user)
    response = owner_client.post(settings_url(workspace, "member_remove", own.pk), follow=True)
    assert "owner is the last admin of Research" in response.content.decode()
    response = owner_client.post(
        settings_url(workspace, "member_role", own.pk), {"role": "viewer"}, follow=True
    )
    assert "make someone else an admin first" in response.content.decode()
    own.refresh_from_db()
    assert own.role == "admin"
    assert not AuditEntry.objects.filter(action__startswith="member").exists()
    # With a second admin, the first may step down, and then no longer sees the settings.
    other = Membership.objects.get(workspace=workspace, user__username="teammate")
    owner_client.post(settings_url(workspace, "member_role", other.pk), {"role": "admin"})
    response = owner_client.post(settings_url(workspace, "member_role", own.pk), {"role": "viewer"})
    assert response["Location"] == workspace.get_absolute_url()
    assert owner_client.get(settings_url(workspace)).status_code == 403


def test_a_submitter_cannot_reach_the_settings_and_is_told_why(client, workspace, teammate):
    client.force_login(teammate)
    response = client.get(settings_url(workspace))
    assert response.status_code == 403
    assert "admins may change its members and settings." in response.content.decode()
    own = Membership.objects.get(workspace=workspace, user=teammate)
    assert (
        client.post(settings_url(workspace, "member_role", own.pk), {"role": "admin"}).status_code
        == 403
    )
    own.refresh_from_db()
    assert own.role == "submitter"


# The connection and options -------------------------------------------------------------------


def test_a_new_key_is_tried_against_the_api_before_it_is_saved(owner_client, workspace):
    hint = workspace.api_key_hint
    url = settings_url(workspace, "workspace_connection")
    refused = owner_client.post(
        url, {"base_url": workspace.base_url, "api_key": "sk-ant-fault-revoked-0000"}
    )
    assert refused.status_code == 400
    assert "The API did not accept it" in refused.content.decode()
    assert "sk-ant-fault-revoked-0000" not in refused.content.decode()  # write-only
    workspace.refresh_from_db()
    assert workspace.api_key_hint == hint
    accepted = owner_client.post(
        url, {"base_url": workspace.base_url, "api_key": "sk-ant-new-9876"}
    )
    assert accepted.status_code == 302
    workspace.refresh_from_db()
    assert workspace.api_key == "sk-ant-new-9876"
    [entry] = entries(Action.KEY_CHANGE)
    assert entry.before == {"api_key": hint} and entry.after == {"api_key": workspace.api_key_hint}
    assert "9876" in entry.after["api_key"] and "sk-ant-new-9876" not in str(entry.after)
    page = owner_client.get(settings_url(workspace)).content.decode()
    assert workspace.api_key_hint in page and "sk-ant-new-9876" not in page


def test_a_new_address_needs_the_key_again_and_refuses_internal_hosts(owner_client, workspace):
    url = settings_url(workspace, "workspace_connection")
    response = owner_client.post(url, {"base_url": "https://api.example.com", "api_key": ""})
    assert "Enter the key again when the API base URL changes." in response.content.decode()
    response = owner_client.post(
        url, {"base_url": "http://169.254.169.254/latest", "api_key": "sk-ant-x-1"}
    )
    assert response.status_code == 400
    workspace.refresh_from_db()
    assert workspace.base_url == "http://testserver/emulator"
    response = owner_client.post(url, {"base_url": workspace.base_url, "api_key": ""})
    assert "Nothing changed" in response.content.decode()


def test_options_are_saved_with_their_before_and_after(owner_client, workspace):
    response = owner_client.post(
        settings_url(workspace, "workspace_options"),
        {"notify_email": "on", "notify_webhook_url": "", "results_downloadable": "",
         "daily_tries": "5"},
    )  # fmt: skip
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.notify_email and not workspace.results_downloadable
    assert workspace.daily_tries == 5
    [entry] = entries(Action.SETTINGS_CHANGE)
    assert entry.before == {"notify_email": False, "results_downloadable": True, "daily_tries": 20}
    assert entry.after == {"notify_email": True, "results_downloadable": False, "daily_tries": 5}
    too_many = owner_client.post(
        settings_url(workspace, "workspace_options"),
        {"notify_email": "on", "daily_tries": "5000"},
    )
    assert too_many.status_code == 400
    assert "Ensure this value is less than or equal to 1000." in too_many.content.decode()


# Invitations and passwords --------------------------------------------------------------------


def _link(message) -> str:
    """The path of the link in an email (which starts with SITE_URL, never the request's host)."""
    found = re.search(re.escape(settings.SITE_URL) + r"(/\S+)", message.body)
    assert found is not None, message.body
    return found.group(1)


def test_an_invitation_lets_a_new_person_set_a_password_once(
    owner_client, client, workspace, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            settings_url(workspace, "member_invite"),
            {"email": "lin@example.com", "role": "viewer"},
        )
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["lin@example.com"] and "Research" in message.subject
    assert "password" in message.body and "pw-" not in message.body
    membership = Membership.objects.get(workspace=workspace, user__email="lin@example.com")
    assert membership.role == "viewer" and not membership.user.has_usable_password()
    link = _link(message)
    form = client.get(link, follow=True)
    assert "Welcome to the batch dashboard" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-long-passphrase-7", "new_password2": "a-long-passphrase-7"},
    )
    assert done.status_code == 302 and done["Location"] == reverse("home")
    assert client.get(reverse("home")).context["user"].email == "lin@example.com"
    # One time only.
    client.logout()
    again = client.get(link, follow=True)
    assert "expired or was already used" in again.content.decode()
    assert actions()[:2] == [Action.MEMBER_INVITE, Action.PASSWORD_SET]


def test_an_invitation_link_expires(owner_client, client, workspace, settings,
                                    django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(
            settings_url(workspace, "member_invite"), {"email": "kay@example.com", "role": "viewer"}
        )
    link = _link(mail.outbox[0])
    with time_machine.travel(timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)):
        response = client.get(link, follow=True)
    assert "expired or was already used" in response.content.decode()


def test_an_invitation_is_not_a_password_reset(client, owner_client, workspace,
                                               django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(
            settings_url(workspace, "member_invite"), {"email": "mo@example.com", "role": "viewer"}
        )
    invitation = _link(mail.outbox[0])
    as_reset = invitation.replace("/invitation/", "/password/reset/")
    assert "expired or was already used" in client.get(as_reset, follow=True).content.decode()


def test_inviting_someone_who_has_a_login_points_to_adding_them(owner_client, workspace, user):
    user.email = "owner@example.com"
    user.save()
    response = owner_client.post(
        settings_url(workspace, "member_invite"), {"email": "OWNER@example.com", "role": "viewer"}
    )
    assert response.status_code == 400
    assert "already has a login: add them as a member above instead." in response.content.decode()


def test_a_password_is_reset_by_email(client, user, django_capture_on_commit_callbacks):
    user.email = "owner@example.com"
    user.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("password_reset"), {"email": "owner@example.com"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert "owner" in message.body and "pw-owner" not in message.body
    form = client.get(_link(message), follow=True)
    assert "Choose a new password" in form.content.decode()
    client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "another-passphrase-8", "new_password2": "another-passphrase-8"},
    )
    user.refresh_from_db()
    assert user.check_password("another-passphrase-8")
    assert entries(Action.PASSWORD_SET)[0].target == "password reset"


def test_asking_for_a_reset_does_the_same_work_for_an_unknown_address(
    client, user, django_capture_on_commit_callbacks, django_assert_num_queries
):
    """The email is a task's job, queued for a known address and an unknown one alike (the
    unknown one's sends nothing): the answer's time cannot tell whether an address has a
    login."""
    user.email = "owner@example.com"
    user.save()
    queued = []
    for address in ("owner@example.com", "nobody@example.com"):
        with (
            django_assert_num_queries(1),
            django_capture_on_commit_callbacks(execute=False) as callbacks,
        ):
            answer = client.post(reverse("password_reset"), {"email": address})
        assert answer.status_code == 302 and mail.outbox == []
        queued.append(len(callbacks))
    assert queued == [1, 1]


def test_the_login_page_links_to_the_password_reset(client):
    assert reverse("password_reset").encode() in client.get(reverse("login")).content


# Attribution ----------------------------------------------------------------------------------


def test_cancels_and_deletes_name_who_asked(owner_client, workspace, user):
    running = factories.running_batch(workspace, submitted_by=user)
    owner_client.post(reverse("batch_cancel", args=[workspace.slug, running.api_id]))
    running.refresh_from_db()
    assert running.canceled_by == user
    Batch.objects.filter(pk=running.pk).update(cancel_initiated_at=running.created_at)
    page = owner_client.get(running.get_absolute_url()).content.decode()
    assert "Canceled</dt><dd>by owner" in page
    ended = factories.batch(workspace)
    owner_client.post(
        reverse("batch_delete", args=[workspace.slug, ended.api_id]), {"keep_local": "on"}
    )
    ended.refresh_from_db()
    assert ended.deleted_by == user
    assert (
        "Created outside the dashboard"
        in owner_client.get(ended.get_absolute_url()).content.decode()
    )
    assert actions() == [Action.CANCEL, Action.DELETE]
    assert AuditEntry.objects.get(action=Action.DELETE).after == {"keep_local_copy": True}


# The audit log --------------------------------------------------------------------------------


def test_logins_and_failed_logins_are_recorded(client, user):
    client.post(reverse("login"), {"username": "owner", "password": "wrong"})
    client.post(reverse("login"), {"username": "owner", "password": "pw-owner-123"})
    failed, login = AuditEntry.objects.order_by("pk")
    assert failed.action == Action.LOGIN_FAILED and failed.actor_id is None
    assert failed.target == "username owner" and "wrong" not in str(failed.__dict__)
    assert login.action == Action.LOGIN and login.actor_id == user.pk


def test_downloads_of_results_are_recorded(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace))
    response = owner_client.get(reverse("download_csv", args=[workspace.slug, batch.api_id]))
    b"".join(response.streaming_content)
    [entry] = entries(Action.DOWNLOAD)
    assert entry.target == f"batch {batch.api_id}" and entry.after["file"].endswith(".csv")


def test_the_audit_page_filters_and_exports(owner_client, workspace, user, teammate):
    audit.record(Action.SUBMIT, actor=user, workspace=workspace, target="upload a")
    audit.record(Action.CANCEL, actor=teammate, workspace=workspace, target="batch b")
    other = Workspace.objects.create(name="Other", slug="other", base_url="https://api.example.com")
    audit.record(Action.CANCEL, actor=teammate, workspace=other, target="elsewhere")
    audit.record(Action.LOGIN_FAILED, actor_name="teammate", target="username teammate")
    audit.record(Action.LOGIN_FAILED, actor_name="stranger", target="username stranger")
    audit.record(Action.SETTINGS_CHANGE, actor=user, workspace=workspace, target="=HYPERLINK(1)",
                 before={"notify_email": False}, after={"notify_email": True})  # fmt: skip
    page = owner_client.get(reverse("workspace_audit", args=[workspace.slug]))
    text = page.content.decode()
    assert "upload a" in text and "batch b" in text and "elsewhere" not in text
    # The members' own entries (a failed login under a member's name) belong to no workspace.
    assert "username teammate" in text and "username stranger" not in text
    filtered = owner_client.get(
        reverse("workspace_audit", args=[workspace.slug]), {"person": "teammate"}
    ).content.decode()
    assert "batch b" in filtered and "upload a" not in filtered
    by_action = owner_client.get(
        reverse("workspace_audit", args=[workspace.slug]), {"action": "submit"}
    ).content.decode()
    assert "upload a" in by_action and "batch b" not in by_action
    future = owner_client.get(
        reverse("workspace_audit", args=[workspace.slug]), {"since": "2999-01-01"}
    ).content.decode()
    assert "No entries match these filters" in future
    nonsense = owner_client.get(
        reverse("workspace_audit", args=[workspace.slug]), {"since": "yesterday", "page": "x"}
    )
    assert nonsense.status_code == 200
    export = owner_client.get(reverse("workspace_audit_csv", args=[workspace.slug]))
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["at", "person", "action", "target", "address", "before", "after"]
    # The header and the four entries; the owner's login came before the workspace, so no.
    assert len(rows) == 5
    assert [row[3] for row in rows if "HYPERLINK" in row[3]] == ["'=HYPERLINK(1)"]


def test_nobody_changes_or_deletes_an_audit_entry(admin_client):
    entry = audit.record(Action.LOGIN_FAILED, actor_name="x", target="username x")
    with pytest.raises(AuditEntry.Immutable):
        entry.save()
    with pytest.raises(AuditEntry.Immutable):
        entry.delete()
    with pytest.raises(AuditEntry.Immutable):
        AuditEntry.objects.filter(pk=entry.pk).update(target="y")
    with pytest.raises(AuditEntry.Immutable):
        AuditEntry.objects.all().delete()
    change = reverse("admin:batches_auditentry_change", args=[entry.pk])
    assert admin_client.post(change, {"target": "y"}).status_code == 403
    delete = reverse("admin:batches_auditentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:batches_auditentry_add")).status_code == 403
    if connection.vendor == "postgresql":  # the database itself refuses, whatever the code
        with (
            pytest.raises(Exception, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE batches_auditentry SET target = 'y'")
    assert AuditEntry.objects.get(pk=entry.pk).target == "username x"


def test_the_system_records_batches_that_end_or_vanish(workspace):
    from django.utils import timezone

    from batches import mirror

    batch = factories.running_batch(workspace)
    assert batch.expires_at is not None
    item = {"id": batch.api_id, "type": "message_batch", "processing_status": "ended",
            "request_counts": {"processing": 0, "succeeded": 4, "errored": 0, "canceled": 0,
                               "expired": 0},
            "created_at": batch.created_at.isoformat(), "ended_at": timezone.now().isoformat(),
            "expires_at": batch.expires_at.isoformat(), "cancel_initiated_at": None,
            "archived_at": None, "results_url": None}  # fmt: skip
    mirror.upsert_batches(workspace, [item], timezone.now())
    [entry] = entries(Action.BATCH_ENDED)
    assert entry.actor_id is None and entry.actor_label == "System"
    assert entry.workspace_id == workspace.pk and batch.api_id in entry.target


# Shell doors ----------------------------------------------------------------------------------


def test_createworkspace_takes_members_with_roles(django_user_model, monkeypatch):
    for name in ("ada", "bob"):
        django_user_model.objects.create_user(name)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-shell-1")
    call_command("createworkspace", "Shell", "--base-url", "https://api.anthropic.com",
                 "--member", "ada:admin", "--member", "bob", stdout=io.StringIO())  # fmt: skip
    workspace = Workspace.objects.get(name="Shell")
    roles = dict(workspace.memberships.values_list("user__username", "role"))
    assert roles == {"ada": "admin", "bob": "submitter"}
    assert entries(Action.WORKSPACE_CREATE)[0].after["members"] == roles
    with pytest.raises(CommandError, match="the role must be one of viewer, submitter, admin"):
        call_command("createworkspace", "Other", "--base-url", "https://api.anthropic.com",
                     "--member", "ada:owner")  # fmt: skip


def test_members_prints_adds_changes_and_removes(workspace, django_user_model):
    django_user_model.objects.create_user("cy")
    out = io.StringIO()
    call_command("members", "Research", "--add", "cy:viewer", stdout=out)
    assert out.getvalue().splitlines() == ["cy\tviewer", "owner\tadmin", "teammate\tsubmitter"]
    out = io.StringIO()
    call_command("members", "research", "--add", "cy:admin", "--remove", "teammate", stdout=out)
    assert out.getvalue().splitlines() == ["cy\tadmin", "owner\tadmin"]
    with pytest.raises(CommandError, match="last admin"):
        call_command("members", "Research", "--remove", "cy", "--remove", "owner")
    assert workspace.memberships.count() == 2  # nothing of the refused command was kept
    with pytest.raises(CommandError, match="No workspace named"):
        call_command("members", "Nope")
    assert actions() == [Action.MEMBER_ADD, Action.MEMBER_ROLE, Action.MEMBER_REMOVE]


def test_a_new_member_brings_no_history_from_before_they_joined(
    owner_client, workspace, django_user_model
):
    newcomer = django_user_model.objects.create_user("nina", password="pw-nina-12345")
    audit.record(Action.LOGIN, actor=newcomer, target="before joining")
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        Membership.objects.create(workspace=workspace, user=newcomer, role="viewer")
    with time_machine.travel(timezone.now() + timedelta(seconds=10)):
        audit.record(Action.LOGIN, actor=newcomer, target="after joining")
    page = owner_client.get(reverse("workspace_audit", args=[workspace.slug])).content.decode()
    assert "after joining" in page and "before joining" not in page


def test_someone_whose_invitation_expired_can_be_invited_again(
    owner_client, client, workspace, settings, django_capture_on_commit_callbacks
):
    url = settings_url(workspace, "member_invite")
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(url, {"email": "ola@example.com", "role": "viewer"})
    with time_machine.travel(timezone.now() + timedelta(days=4)):
        expired = client.get(_link(mail.outbox[0]), follow=True)
        assert "expired or was already used" in expired.content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            response = owner_client.post(url, {"email": "ola@example.com", "role": "submitter"})
        assert response.status_code == 302
        assert Membership.objects.get(user__email="ola@example.com").role == "submitter"
        fresh = client.get(_link(mail.outbox[1]), follow=True)
        assert "Welcome to the batch dashboard" in fresh.content.decode()
