"""Finished-batch notices: who may turn them on, and that only recent ends are news."""

from datetime import timedelta

import pytest

from batches import labels, notices
from batches.admin import WorkspaceForm
from batches.workspaces import create_workspace
from tests import factories
from tests.polls import header_fingerprint

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


def ended_batch(workspace, ended_ago, **fields):
    return factories.ended_news(workspace, ended_ago, **fields)


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
    recent = ended_batch(workspace, timedelta(minutes=5), submitted_by=user)
    ended_batch(workspace, notices.NOTICE_WINDOW + timedelta(minutes=5), submitted_by=user)
    ended_batch(workspace, timedelta(days=30), submitted_by=user)
    assert notices.batches_to_announce(workspace.pk) == [recent.pk]


def test_it_toasts_only_batches_that_ended_recently(owner_client, workspace, user):
    ended_batch(workspace, timedelta(minutes=5), submitted_by=user, name="Fresh")
    for number in range(2, 9):
        ended_batch(workspace, timedelta(hours=3 + number), submitted_by=user, name="Old")
    body = owner_client.get("/poll/", **HX).content.decode()
    assert "Fresh" in body and "Old" not in body
    seen = header_fingerprint(body)
    assert owner_client.get("/poll/", {"v": seen}, **HX).status_code == 204  # nothing more comes


def test_it_emails_and_posts_the_webhook_once(workspace, user, mailoutbox):
    import json

    import httpx

    user.email = "owner@example.test"
    user.save()
    workspace.notify_email = True
    workspace.notify_webhook_url = "https://hooks.example.test/batches"
    workspace.save()
    batch = ended_batch(workspace, timedelta(minutes=1), submitted_by=user, name="Mine")
    labels.set_labels(batch, ["nightly", "eval"])
    posted = []

    def handler(request):
        posted.append(json.loads(request.content))
        return httpx.Response(200)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    assert notices.batches_to_announce(workspace.pk) == [batch.pk]
    assert notices.announce(batch.pk, http=http) == {"email": True, "webhook": True}
    assert notices.announce(batch.pk, http=http) == {"skipped": True}
    assert len(mailoutbox) == 1 and "Mine" in mailoutbox[0].subject
    assert "2 succeeded" in mailoutbox[0].body
    assert "Labels: eval, nightly." in mailoutbox[0].body
    assert posted[0]["type"] == "batch.ended"
    data = posted[0]["data"]
    assert data["id"] == batch.api_id and data["request_counts"]["succeeded"] == 2
    assert data["url"].endswith(batch.get_absolute_url())


def test_a_name_with_a_line_break_still_gets_its_email(workspace, user, mailoutbox):
    user.email = "owner@example.test"
    user.save()
    workspace.notify_email = True
    workspace.save()
    batch = ended_batch(workspace, timedelta(minutes=1), submitted_by=user, name="Two\nlines\r")
    assert notices.announce(batch.pk)["email"] is True
    assert mailoutbox[0].subject == "Batch ended: Two lines"
