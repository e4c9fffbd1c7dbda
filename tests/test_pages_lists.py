"""The batch lists (every workspace's, one workspace's) and the workspace list."""

import pytest

from batches.models import Batch
from tests import factories
from tests.polls import fingerprint_of

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def test_it_lists_batches_with_progress_cost_and_filters(owner_client, workspace, user):
    ended = factories.with_results(
        factories.batch(workspace, 1, name="Nightly eval", submitted_by=user)
    )
    running = factories.running_batch(workspace, processing=4, minutes_ago=3)
    html = owner_client.get("/").content.decode()
    assert "Nightly eval" in html and running.api_id in html
    assert "running 3 m" in html and "of at most 24 h" in html
    assert "$0.0" in html  # the actual cost of the ended batch, from its results' usage
    assert ended.cost is not None and ended.cost > 0 and ended.input_tokens == 300
    assert 'hx-trigger="every 3s, batches-changed from:body"' in html

    only_problems = owner_client.get("/", {"problems": "errored"})
    assert [b.api_id for b in only_problems.context["rows"]] == [ended.api_id]
    searched = owner_client.get("/", {"q": "nightly"})
    assert [b.pk for b in searched.context["rows"]] == [ended.pk]
    mine = owner_client.get("/", {"submitter": str(user.pk)})
    assert [b.pk for b in mine.context["rows"]] == [ended.pk]
    outside = owner_client.get("/", {"submitter": "outside", "status": "active"})
    assert [b.pk for b in outside.context["rows"]] == [running.pk]
    none = owner_client.get("/", {"q": "nothing-like-this"}).content.decode()
    assert "No batches match these filters" in none


def test_each_outcome_has_its_badge(owner_client, workspace):
    from django.utils import timezone

    factories.running_batch(workspace)
    factories.batch(workspace, errored=0)
    factories.batch(workspace, succeeded=0, errored=0, expired=4)
    factories.batch(workspace, canceled=2, cancel_initiated_at=timezone.now())
    factories.batch(workspace, errored=2)
    factories.batch(workspace, gone_at=timezone.now())
    html = owner_client.get("/").content.decode()
    for label in ("In progress", "Ended<", "Expired", "Canceled", "Ended with problems", "Deleted"):
        assert label in html, label


def test_the_list_polls_while_open_and_shows_a_batch_made_elsewhere_at_the_next_poll(
    owner_client, workspace
):
    """Nothing running: the list still polls (a batch may start anywhere), answered 204 from
    the change stamps until the mirror stores a new batch."""
    factories.batch(workspace)
    fragment = owner_client.get("/", **HX)
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and 'id="batch-list"' in body and "every 3s" in body
    assert "batches-changed from:body" in body
    seen = fingerprint_of(body)
    assert owner_client.get("/", {"v": seen}, **HX).status_code == 204
    elsewhere = factories.running_batch(workspace)
    news = owner_client.get("/", {"v": seen}, **HX)
    assert news.status_code == 200 and elsewhere.api_id in news.content.decode()
    assert news["HX-Trigger"] == "region-changed"  # the header's counter asks at once


def test_the_list_poll_answers_204_until_what_it_shows_changes(owner_client, workspace, frozen_now):
    running = factories.running_batch(workspace, processing=2)
    seen = fingerprint_of(owner_client.get("/").content.decode())
    unchanged = owner_client.get("/", {"v": seen}, **HX)
    assert unchanged.status_code == 204 and unchanged.content == b""
    Batch.objects.filter(pk=running.pk).update(processing=1, succeeded=1)
    changed = owner_client.get("/", {"v": seen}, **HX)
    assert changed.status_code == 200 and "1 of 2 done" in changed.content.decode()
    again = fingerprint_of(changed.content.decode())
    assert again != seen and owner_client.get("/", {"v": again}, **HX).status_code == 204
    assert "v=" not in changed.content.decode().split("hx-vals")[0]  # not carried in the address
    Batch.objects.filter(pk=running.pk).update(processing_status="ended")
    ended = owner_client.get("/", {"v": again}, **HX)
    assert ended.status_code == 200 and "every 3s" in ended.content.decode()
    assert (
        owner_client.get("/", {"v": fingerprint_of(ended.content.decode())}, **HX).status_code
        == 204
    )


def test_the_list_poll_sends_the_running_time_when_its_text_changes(
    owner_client, workspace, frozen_now
):
    factories.running_batch(workspace, processing=5, minutes_ago=0)
    frozen_now.shift(2 * 3600)  # past the first hour, the label says hours and minutes
    seen = fingerprint_of(owner_client.get("/").content.decode())
    assert owner_client.get("/", {"v": seen}, **HX).status_code == 204
    frozen_now.shift(60)
    moved = owner_client.get("/", {"v": seen}, **HX)
    assert moved.status_code == 200 and "running 2 h 1 m of at most 24 h" in moved.content.decode()


def test_the_workspace_page_is_the_list_for_one_workspace(owner_client, workspace):
    batch = factories.batch(workspace)
    assert batch.api_id in owner_client.get(workspace.get_absolute_url()).content.decode()
    fragment = owner_client.get(workspace.get_absolute_url(), **HX)
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()


def test_list_pages_keep_a_constant_number_of_queries(
    owner_client, workspace, user, django_assert_max_num_queries
):
    for hours in range(2):
        factories.with_results(factories.batch(workspace, hours, submitted_by=user))
    with django_assert_max_num_queries(20) as small:
        owner_client.get("/")
    limit = len(small.captured_queries)
    for hours in range(2, 24):
        factories.with_results(factories.batch(workspace, hours, submitted_by=user))
        factories.running_batch(workspace)
    for path in ("/", "/?status=ended&q=msg", workspace.get_absolute_url()):
        with django_assert_max_num_queries(limit):
            owner_client.get(path)
        with django_assert_max_num_queries(limit):
            owner_client.get(path, **HX)


def test_an_empty_list_says_what_to_do_next(owner_client, workspace):
    html = owner_client.get("/").content.decode()
    assert "No batches yet" in html and f"/w/{workspace.slug}/upload/" in html
    fragment = owner_client.get("/", **HX).content.decode()
    assert "No batches yet" in fragment


def test_the_workspace_list_shows_counts_and_the_key_hint_only(owner_client, workspace):
    factories.batch(workspace)
    factories.running_batch(workspace)
    html = owner_client.get("/workspaces/").content.decode()
    assert workspace.name in html and workspace.api_key_hint in html
    assert workspace.api_key not in html


def test_a_teammate_sees_the_batches_of_a_shared_workspace(client, teammate, workspace):
    batch = factories.batch(workspace, name="Nightly eval")
    client.force_login(teammate)
    html = client.get(workspace.get_absolute_url()).content.decode()
    assert "Nightly eval" in html and batch.api_id in html
    assert "outside the dashboard" in html


def test_a_list_viewed_again_counts_nothing_until_a_batch_changes(owner_client, workspace):
    """The page count and the header's counter are kept under the workspaces' change stamps."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    factories.batch(workspace)
    owner_client.get("/")
    with CaptureQueriesContext(connection) as queries:
        again = owner_client.get("/")
    assert again.status_code == 200 and "0 running" in again.content.decode()
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    factories.running_batch(workspace)
    after = owner_client.get("/").content.decode()
    assert "1 running" in after and "2 batches" in after


def test_times_are_named_by_the_viewers_time_zone(owner_client, workspace, frozen_now):
    batch = factories.batch(workspace)
    owner_client.cookies["tz"] = "Europe/Paris"
    paris = '<abbr class="zone" title="Times in Europe/Paris">CET</abbr>'
    assert paris in owner_client.get("/").content.decode()  # the list's Created column
    detail = owner_client.get(batch.get_absolute_url()).content.decode()
    assert detail.count(paris) == 2  # the timeline, and the Created row
    owner_client.cookies["tz"] = "Asia/Kolkata"
    assert 'Times in Asia/Kolkata">IST</abbr>' in owner_client.get("/").content.decode()
    del owner_client.cookies["tz"]
    assert (
        '<abbr class="zone" title="Times in UTC">UTC</abbr>'
        in owner_client.get("/").content.decode()
    )


def test_a_long_name_cut_short_in_the_list_is_whole_on_hover(owner_client, workspace):
    long_name = "Quarterly evaluation of every support transcript in the archive, second pass"
    factories.batch(workspace, name=long_name)
    html = owner_client.get("/").content.decode()
    assert f'class="cell-main" href="/w/{workspace.slug}/batches/' in html
    assert f'title="{long_name}">{long_name}</a>' in html
