from datetime import timedelta

import pytest
from django.utils import timezone

from batches.models import Batch, Result
from batches.workspaces import create_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def workspace(user, teammate):
    return create_workspace(
        "Research", "https://api.example.test", "sk-ant-pages-0123456789", members=[user, teammate]
    )


def make_mirror_batch(workspace, number=0, **fields):
    values = {
        "processing_status": "ended",
        "succeeded": 3,
        "errored": 1,
        "created_at": timezone.now() - timedelta(hours=number + 1),
        "ended_at": timezone.now() - timedelta(hours=number),
        **fields,
    }
    return Batch.objects.create(workspace=workspace, api_id=f"msgbatch_{number:04d}", **values)


def make_results(batch, count):
    Result.objects.bulk_create(
        Result(
            batch=batch,
            custom_id=f"req-{number:06d}",
            result_type="errored" if number % 10 == 0 else "succeeded",
            error_type="invalid_request_error" if number % 10 == 0 else "",
            answer_text=f"Answer {number}",
        )
        for number in range(count)
    )


def test_every_page_shows_only_the_members_workspaces(client, outsider, workspace):
    batch = make_mirror_batch(workspace)
    client.force_login(outsider)
    assert client.get(workspace.get_absolute_url()).status_code == 404
    assert client.get(batch.get_absolute_url()).status_code == 404
    assert client.get(f"{batch.get_absolute_url()}results/").status_code == 404
    assert b"Research" not in client.get("/workspaces/").content
    assert batch.api_id.encode() not in client.get("/").content


def test_the_workspace_list_shows_counts_and_the_key_hint_only(owner_client, workspace):
    make_mirror_batch(workspace, 0)
    make_mirror_batch(workspace, 1, processing_status="in_progress", ended_at=None)
    html = owner_client.get("/workspaces/").content.decode()
    assert "Research" in html and "sk-ant-...6789" in html
    assert "sk-ant-pages-0123456789" not in html


def test_a_teammate_sees_the_batches_of_a_shared_workspace(client, teammate, workspace):
    batch = make_mirror_batch(workspace, name="Nightly eval")
    client.force_login(teammate)
    html = client.get(workspace.get_absolute_url()).content.decode()
    assert "Nightly eval" in html and batch.api_id in html
    assert "outside the dashboard" in html


def test_the_batch_page_shows_every_field(owner_client, workspace):
    batch = make_mirror_batch(
        workspace,
        results_url="https://api.example/results",
        ingest_attempts=1,
        ingest_error="The results stream ended after 3 of 4 results, so nothing of it is final.",
        ingest_not_before=timezone.now() + timedelta(minutes=1),
    )
    html = owner_client.get(batch.get_absolute_url()).content.decode()
    for text in (
        batch.api_id,
        "Succeeded",
        "Errored",
        "Expires",
        "nothing of that attempt is final",
        "ended after 3 of 4",
    ):
        assert text in html


def test_the_results_page_pages_by_custom_id(owner_client, workspace):
    batch = make_mirror_batch(workspace)
    make_results(batch, 120)
    url = f"{batch.get_absolute_url()}results/"
    first = owner_client.get(url)
    assert first.context["results"][0].custom_id == "req-000000"
    assert len(first.context["results"]) == 50 and first.context["has_next"]
    second = owner_client.get(url, {"after": first.context["last_id"]})
    assert second.context["results"][0].custom_id == "req-000050"
    back = owner_client.get(url, {"before": second.context["first_id"]})
    assert [r.custom_id for r in back.context["results"]] == [
        r.custom_id for r in first.context["results"]
    ]
    assert not back.context["has_previous"]
    errored = owner_client.get(url, {"type": "errored"})
    assert {r.result_type for r in errored.context["results"]} == {"errored"}
    assert len(errored.context["results"]) == 12


def test_list_pages_use_a_constant_number_of_queries(
    owner_client, workspace, django_assert_max_num_queries
):
    for number in range(3):
        make_mirror_batch(workspace, number)
    with django_assert_max_num_queries(8) as small:
        owner_client.get("/")
    for number in range(3, 25):
        make_mirror_batch(workspace, number, submitted_by=workspace.members.first())
    with django_assert_max_num_queries(len(small.captured_queries)):
        owner_client.get("/")
    with django_assert_max_num_queries(len(small.captured_queries)):
        owner_client.get(workspace.get_absolute_url())
