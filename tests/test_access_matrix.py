"""Who may open what: every URL of the dashboard, asked by an outsider, a viewer, a submitter, an
admin and the site's superuser, against the rule written here for it.

The URLs come from the URLconf, so a new URL without a rule fails the suite (as does a rule for a
URL that is gone). Anonymous visitors are sent to the login by every one of them
(tests/test_web_basics.py).
"""

import itertools
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from batches import submissions
from batches.models import Batch, Membership, WebhookDelivery, Workspace
from batches.workspaces import create_workspace
from tests import factories
from tests.helpers import named_urls, run_checks

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"

EVERYONE = "everyone logged in"  # not about one workspace
NOT_HERE = "not asked here"  # the login and password pages, for people not logged in
# URL name: (the ability it needs in the workspace it names, the method that uses it).
RULES = {
    "healthz": (NOT_HERE, "GET"),
    "favicon": (NOT_HERE, "GET"),
    "metrics": (NOT_HERE, "GET"),  # a bearer token, not a login: tests/test_metrics.py
    "login": (NOT_HERE, "GET"),
    "logout": (NOT_HERE, "POST"),
    "password_reset": (NOT_HERE, "GET"),
    "password_reset_done": (NOT_HERE, "GET"),
    "password_reset_confirm": (NOT_HERE, "GET"),
    "password_reset_complete": (NOT_HERE, "GET"),
    "accept_invitation": (NOT_HERE, "GET"),
    "home": (EVERYONE, "GET"),
    "workspace_list": (EVERYONE, "GET"),
    "upload_choose": (EVERYONE, "GET"),
    "usage": (EVERYONE, "GET"),
    "dashboard_poll": (EVERYONE, "GET"),
    "acknowledge_toasts": (EVERYONE, "POST"),
    "notification_preference": (EVERYONE, "POST"),
    "workspace_batches": ("view", "GET"),
    "workspace_usage": ("view", "GET"),
    "batch_detail": ("view", "GET"),
    "batch_results": ("view", "GET"),
    "result_detail": ("view", "GET"),
    "result_raw": ("view", "GET"),
    "submission_detail": ("view", "GET"),
    "submission_report": ("view", "GET"),
    "submission_request": ("view", "GET"),
    "download_jsonl": ("download", "GET"),
    "download_csv": ("download", "GET"),
    "download_answers": ("download", "GET"),
    "submission_valid_lines": ("download", "GET"),
    "submission_left_out_lines": ("download", "GET"),
    "upload": ("submit", "GET"),
    "submission_template": ("submit", "POST"),
    "submission_preview": ("submit", "POST"),
    "submission_submit": ("submit", "POST"),
    "submission_stop": ("submit", "POST"),
    "submission_try": ("submit", "POST"),
    "submission_check": ("submit", "POST"),
    "batch_cancel": ("submit", "GET"),
    "batch_refresh": ("submit", "POST"),
    "batch_rename": ("submit", "POST"),
    "batch_resubmit": ("submit", "GET"),
    "batch_delete": ("delete", "GET"),
    "workspace_settings": ("manage", "GET"),
    "workspace_connection": ("manage", "POST"),
    "workspace_options": ("manage", "POST"),
    "member_add": ("manage", "POST"),
    "member_invite": ("manage", "POST"),
    "member_role": ("manage", "POST"),
    "member_remove": ("manage", "POST"),
    "webhook_secret": ("manage", "POST"),
    "webhook_replay": ("manage", "POST"),
    "workspace_audit": ("manage", "GET"),
    "workspace_audit_csv": ("manage", "GET"),
}
ALLOWED = {
    "viewer": {"view", "download"},
    "submitter": {"view", "download", "submit"},
    "admin": {"view", "download", "submit", "delete", "manage"},
    "superuser": {"view", "download", "submit", "delete", "manage"},
    "outsider": set(),
}


def test_every_url_has_a_rule():
    names = {name for name, _ in named_urls()}
    assert names - RULES.keys() == set(), "give these URLs a rule in RULES"
    assert RULES.keys() - names == set(), "these rules name URLs that are gone"


@pytest.fixture
def place(django_user_model, settings, api_in_process):
    """A workspace with a checked JSONL upload (with problems), a checked CSV upload, and an
    ended batch from the CSV with stored results; and a person in each role."""
    people = {
        role: django_user_model.objects.create_user(role, password="pw-role-12345")
        for role in ("viewer", "submitter", "admin", "outsider")
    }
    people["superuser"] = django_user_model.objects.create_superuser("root", password="pw-r-123")
    workspace = create_workspace(
        "Matrix",
        "http://testserver/emulator",
        "sk-ant-matrix-1",
        members=[(people[role], role) for role in ("viewer", "submitter", "admin")],
    )
    create_workspace("Elsewhere", "http://testserver/emulator", "sk-ant-else-1",
                     members=[(people["outsider"], "admin")])  # fmt: skip
    # A JSONL file with one line that is not JSON (so it has lines to leave out), and a CSV.
    files = {
        "with-problems.jsonl": (SAMPLES / "questions.jsonl").read_bytes() + b'{"custom_id": \n',
        "reviews.csv": (SAMPLES / "reviews.csv").read_bytes(),
    }
    uploads = {
        name: submissions.create_submission(
            workspace, people["admin"], SimpleUploadedFile(name, data), name=name
        )
        for name, data in files.items()
    }
    run_checks()
    csv = uploads["reviews.csv"]
    batch = factories.with_results(
        factories.batch(workspace, submitted_by=people["admin"], submission=csv)
    )
    batch.results_file.save("r.jsonl.gz", ContentFile(b""))
    return workspace, batch, uploads["with-problems.jsonl"], people


def _address(name, parameters, workspace: Workspace, batch: Batch, submission, make_member,
             make_delivery):  # fmt: skip
    values = {
        "slug": workspace.slug,
        "api_id": batch.api_id,
        "custom_id": batch.results.order_by("pk")[0].custom_id,
        "key": submission.key,
    }
    if "pk" in parameters:
        values["pk"] = make_delivery().pk if name == "webhook_replay" else make_member().pk
    if name == "submission_request":
        values["custom_id"] = submission.requests.order_by("pk").first().custom_id
    return reverse(name, kwargs={parameter: values[parameter] for parameter in parameters})


@pytest.mark.parametrize("role", ["outsider", "viewer", "submitter", "admin", "superuser"])
def test_every_url_answers_each_role_as_its_rule_says(client, place, role, django_user_model):
    workspace, batch, submission, people = place
    client.force_login(people[role])
    counter = itertools.count()

    def make_member():
        extra = django_user_model.objects.create_user(f"extra{next(counter)}")
        return Membership.objects.create(workspace=workspace, user=extra, role="viewer")

    def make_delivery():
        return WebhookDelivery.objects.create(
            workspace=workspace, event="batch.ended", message_id=f"msg_{next(counter)}",
            url="https://hooks.example.com/x", payload={},
        )  # fmt: skip

    asked = 0
    # What only reads first: a POST may change what a later URL finds (a check started again).
    for name, parameters in sorted(named_urls(), key=lambda url: (RULES[url[0]][1], url[0])):
        need, method = RULES[name]
        if need == NOT_HERE:
            continue
        address = _address(name, parameters, workspace, batch, submission, make_member,
                           make_delivery)  # fmt: skip
        response = client.get(address) if method == "GET" else client.post(address)
        if response.streaming:
            b"".join(response.streaming_content)
        status = response.status_code
        asked += 1
        if need == EVERYONE or need in ALLOWED[role]:
            assert status < 500 and status not in (403, 404), (role, name, status)
        elif role == "outsider":
            assert status == 404, (role, name, status)  # not even told the workspace exists
        else:
            assert status == 403, (role, name, status)
            assert b"Not allowed" in response.content, name
    assert asked >= 35


def test_downloads_turned_off_leave_them_to_the_admins(client, place):
    workspace, batch, _, people = place
    Workspace.objects.filter(pk=workspace.pk).update(results_downloadable=False)
    address = reverse("download_csv", args=[workspace.slug, batch.api_id])
    page = reverse("batch_detail", args=[workspace.slug, batch.api_id])
    for role, allowed in (("viewer", False), ("submitter", False), ("admin", True)):
        client.force_login(people[role])
        response = client.get(address)
        if allowed:
            assert response.status_code == 200
            b"".join(response.streaming_content)
        else:
            assert response.status_code == 403
            assert b"Downloads of results are turned off" in response.content
        shown = client.get(page).content
        assert (address.encode() in shown) is allowed, role
        assert (b"Downloads of results are turned off" in shown) is not allowed, role


def test_pages_offer_only_what_the_role_may(client, place):
    workspace, batch, submission, people = place
    Batch.objects.filter(pk=batch.pk).update(processing_status="in_progress", ended_at=None)
    page = reverse("batch_detail", args=[workspace.slug, batch.api_id])
    listing = reverse("workspace_batches", args=[workspace.slug])
    expectations = {
        "viewer": {"Cancel batch": False, "Refresh now": False, "Upload a file": False,
                   "Settings": False},
        "submitter": {"Cancel batch": True, "Refresh now": True, "Upload a file": True,
                      "Settings": False},
        "admin": {"Cancel batch": True, "Refresh now": True, "Upload a file": True,
                  "Settings": True},
    }  # fmt: skip
    for role, shown in expectations.items():
        client.force_login(people[role])
        text = client.get(page).content.decode() + client.get(listing).content.decode()
        for words, expected in shown.items():
            assert (words in text) is expected, (role, words)
    # Delete is offered to admins only, once the batch has ended.
    Batch.objects.filter(pk=batch.pk).update(processing_status="ended")
    for role, expected in (("viewer", False), ("submitter", False), ("admin", True)):
        client.force_login(people[role])
        assert ("Delete…" in client.get(page).content.decode()) is expected, role
    # A viewer sees an upload's report but no Submit button.
    client.force_login(people["viewer"])
    text = client.get(submission.get_absolute_url()).content.decode()
    assert "problem" in text and "Submit the" not in text and "Stop checking" not in text
