"""Finished-batch notices: who may turn them on, and that only recent ends are news."""

from datetime import timedelta

import pytest
from django.utils import timezone

from batches import notices
from batches.admin import WorkspaceForm
from batches.models import Batch
from batches.workspaces import create_workspace

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def workspace(user, teammate):
    return create_workspace(
        "Research",
        "https://api.example.test",
        "sk-ant-notices-0123456789",
        members=[user, teammate],
    )


def ended_batch(workspace, number, ended_ago, **fields):
    """An ended batch the dashboard saw end (first seen when it ended)."""
    ended_at = timezone.now() - ended_ago
    batch = Batch.objects.create(
        workspace=workspace,
        api_id=f"msgbatch_{number:04d}",
        processing_status="ended",
        succeeded=2,
        created_at=ended_at - timedelta(hours=1),
        expires_at=ended_at + timedelta(hours=23),
        ended_at=ended_at,
        **fields,
    )
    Batch.objects.filter(pk=batch.pk).update(first_seen_at=ended_at)
    return batch


def test_it_lets_an_admin_turn_on_email_and_the_webhook(workspace, admin_client):
    form = WorkspaceForm(
        instance=workspace,
        data={
            "name": workspace.name,
            "slug": workspace.slug,
            "base_url": workspace.base_url,
            "members": [member.pk for member in workspace.members.all()],
            "notify_email": "on",
            "notify_webhook_url": "https://hooks.example.test/batches",
        },
    )
    assert form.is_valid(), form.errors
    form.save()
    workspace.refresh_from_db()
    assert workspace.notify_email
    assert workspace.notify_webhook_url == "https://hooks.example.test/batches"

    html = admin_client.get(f"/admin/batches/workspace/{workspace.pk}/change/").content.decode()
    assert "Notices" in html
    assert 'name="notify_email"' in html and 'name="notify_webhook_url"' in html


def test_it_announces_only_batches_that_ended_recently(workspace, user):
    workspace.notify_email = True
    workspace.save()
    recent = ended_batch(workspace, 1, timedelta(minutes=5), submitted_by=user)
    ended_batch(workspace, 2, notices.NOTICE_WINDOW + timedelta(minutes=5), submitted_by=user)
    ended_batch(workspace, 3, timedelta(days=30), submitted_by=user)
    assert notices.batches_to_announce(workspace.pk) == [recent.pk]


def test_it_toasts_only_batches_that_ended_recently(owner_client, workspace, user):
    ended_batch(workspace, 1, timedelta(minutes=5), submitted_by=user, name="Fresh")
    for number in range(2, 9):
        ended_batch(workspace, number, timedelta(hours=3 + number), submitted_by=user, name="Old")
    body = owner_client.get("/poll/", **HX).content.decode()
    assert "Fresh" in body and "Old" not in body
    from batches.views import counter_state

    seen = counter_state(user)[1]
    assert owner_client.get(f"/poll/?seen={seen}", **HX).status_code == 204  # nothing more comes
