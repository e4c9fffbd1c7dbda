"""Every page answers only for what the person may see, and any address or query without a 500."""

import pytest

from batches.models import Batch
from tests import factories

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
BATCH_PAGES = [
    "",
    "results/",
    "results/req-0000/",
    "results/req-0000/raw/",
    "download/results.csv",
    "download/results.jsonl",
    "download/answers.csv",
    "cancel/",
    "delete/",
    "resubmit/",
]


@pytest.mark.parametrize("suffix", BATCH_PAGES)
def test_it_answers_404_for_a_batch_of_a_workspace_the_user_is_not_in(
    client, outsider, workspace, suffix
):
    batch = factories.with_results(factories.batch(workspace))
    client.force_login(outsider)
    assert client.get(f"{batch.get_absolute_url()}{suffix}").status_code == 404
    assert client.get(f"{batch.get_absolute_url()}{suffix}", **HX).status_code == 404


@pytest.mark.parametrize("suffix", ["cancel/", "delete/", "refresh/", "resubmit/"])
def test_it_refuses_actions_on_an_outsiders_batch(client, outsider, workspace, suffix):
    batch = factories.batch(workspace)
    client.force_login(outsider)
    assert client.post(f"{batch.get_absolute_url()}{suffix}").status_code == 404
    assert Batch.objects.filter(pk=batch.pk, gone_at=None).exists()


def test_every_page_shows_only_the_members_workspaces(client, outsider, workspace):
    batch = factories.batch(workspace)
    client.force_login(outsider)
    assert client.get(workspace.get_absolute_url()).status_code == 404
    assert client.get(workspace.get_absolute_url(), **HX).status_code == 404
    assert workspace.name.encode() not in client.get("/workspaces/").content
    assert batch.api_id.encode() not in client.get("/").content
    assert batch.api_id.encode() not in client.get("/", **HX).content
    assert b"0 running" in client.get("/poll/", **HX).content


def test_it_answers_404_for_a_nul_in_an_address(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace))
    assert owner_client.get(f"/w/{workspace.slug}/batches/msgbatch_%00/").status_code == 404
    assert owner_client.get(f"{batch.get_absolute_url()}results/req%00/").status_code == 404
    assert owner_client.get(f"{batch.get_absolute_url()}results/req%00/raw/").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        {"submitter": "\u00b2"},  # isdigit() says yes, int() says no
        {"submitter": "\u0663"},  # an Arabic-Indic three
        {"submitter": "9" * 40},  # too big for any id column
        {"submitter": "1\n"},
        {"page": "\u00b2"},
        {"page": "-1"},
        {"page": "9" * 40},
        {"status": "\x00"},
        {"workspace": "a\x00b"},
        {"q": "\x00"},
        {"v": "\x00" * 50},
    ],
)
def test_it_answers_any_list_query_without_a_500(owner_client, workspace, user, query):
    factories.batch(workspace, submitted_by=user)
    assert owner_client.get("/", query).status_code == 200
    assert owner_client.get(workspace.get_absolute_url(), query).status_code == 200
    assert owner_client.get("/", query, **HX).status_code in (200, 286)


@pytest.mark.parametrize(
    "query",
    [
        {"after": "\x00"},
        {"before": "req\x00"},
        {"type": "\u00b2"},
        {"error_type": "\x00"},
        {"stop_reason": "\x00"},
        {"q": "\x00" * 300},
    ],
)
def test_it_answers_any_results_query_without_a_500(owner_client, workspace, query):
    batch = factories.with_results(factories.batch(workspace))
    results = f"{batch.get_absolute_url()}results/"
    assert owner_client.get(results, query).status_code == 200
    assert owner_client.get(results, query, **HX).status_code == 200


def test_toasts_are_acknowledged_only_for_the_persons_own_batches(
    client, owner_client, workspace, user, teammate
):
    from datetime import timedelta

    mine = factories.ended_news(workspace, timedelta(minutes=1), submitted_by=user)
    theirs = factories.ended_news(workspace, timedelta(minutes=1), submitted_by=teammate)
    for junk in ("x", "\u00b2", "9" * 40, "-1"):
        assert owner_client.post("/poll/toasts/", {"batch": junk}).status_code == 204
    owner_client.post("/poll/toasts/", {"batch": [mine.pk, theirs.pk]})
    assert Batch.objects.get(pk=mine.pk).end_notified_at is not None
    assert Batch.objects.get(pk=theirs.pk).end_notified_at is None
    assert owner_client.get("/poll/toasts/").status_code == 405
