"""The usage pages and budgets: every figure against sums worked out by hand, the period form,
the CSV downloads, and the budget's paths (under, over, confirmed by an admin, a spend cap)."""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from batches import budgets, totals, usage
from batches.models import Batch, BatchUsage, Result, SubmissionPart
from batches.roles import Role
from batches.workspaces import create_workspace
from tests import factories

pytestmark = pytest.mark.django_db
UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture
def workspace(user, teammate):
    return create_workspace(
        "Research",
        "https://api.example.test",
        "sk-ant-usage-0123456789",
        members=[(user, Role.ADMIN), (teammate, Role.SUBMITTER)],
    )


@pytest.fixture
def other(user):
    return create_workspace(
        "Support", "https://api.example.test", "sk-ant-usage-9876543210", members=[user]
    )


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def stored_batch(workspace, created, results, *, submitted_by=None, ended_after=timedelta(hours=2)):
    """A batch created at `created` with these results stored (built with the factories'
    succeeded/errored), and its totals and usage rows as ingestion leaves them."""
    made = factories.batch(
        workspace,
        created_at=created,
        ended_at=created + ended_after,
        succeeded=sum(1 for r in results if r.result_type == "succeeded"),
        errored=sum(1 for r in results if r.result_type == "errored"),
        submitted_by=submitted_by,
    )
    for result in results:
        result.batch = made
    Result.objects.bulk_create(results)
    Batch.objects.filter(pk=made.pk).update(
        results_ingested=len(results), results_ingested_at=timezone.now()
    )
    totals.store_totals(Batch.objects.filter(pk=made.pk))
    made.refresh_from_db()
    return made


def ok(custom_id, model="claude-haiku-4-5", **usage_fields):
    return factories.succeeded(None, custom_id, model=model, **usage_fields)


def bad(custom_id, error_type="invalid_request_error"):
    return factories.errored(None, custom_id, error_type=error_type)


# Prices (batches/data/prices.json, per million, before the batch's 50% discount): Haiku 4.5
# $1 in and $5 out; Sonnet 4.5 $3 in and $15 out; cache writes 1.25x input, reads 0.1x.
HAIKU_100_50 = Decimal("0.000175")  # (100 * 1 + 50 * 5) / 1e6 / 2
SONNET_1000_200 = Decimal("0.003")  # (1000 * 3 + 200 * 15) / 1e6 / 2


@pytest.fixture
def november(workspace, other, user, teammate):
    """Three batches in November: two in Research (by two people, two models), one in Support."""
    first = stored_batch(
        workspace,
        at(2),
        [ok("a"), ok("b"), bad("c"), bad("d", "overloaded_error")],
        submitted_by=user,
        ended_after=timedelta(hours=1),
    )
    second = stored_batch(
        workspace,
        at(3),
        [
            ok("a", model="claude-sonnet-4-5", input_tokens=1000, output_tokens=200),
            ok("b", cache_creation_input_tokens=1000, cache_read_input_tokens=10_000),
        ],
        submitted_by=teammate,
        ended_after=timedelta(hours=3),
    )
    third = stored_batch(other, at(10), [ok("x")], ended_after=timedelta(hours=5))
    return first, second, third


def period(start=date(2026, 11, 1), end=date(2026, 11, 30), by="day"):
    return usage.Period(start, end, by, UTC_ZONE)


def test_usage_rows_count_and_price_each_model_and_outcome(november):
    first, second, _ = november
    rows = {
        (row.model, row.result_type, row.error_type): row
        for row in BatchUsage.objects.filter(batch=first)
    }
    assert rows["claude-haiku-4-5", "succeeded", ""].requests == 2
    assert rows["claude-haiku-4-5", "succeeded", ""].cost == 2 * HAIKU_100_50
    assert rows["", "errored", "invalid_request_error"].requests == 1
    assert rows["", "errored", "overloaded_error"].cost == 0
    # Cache tokens at their own rates: 1,000 writes at 1.25x $1, 10,000 reads at 0.1x $1, halved.
    cached = BatchUsage.objects.get(batch=second, model="claude-haiku-4-5")
    assert cached.cost == HAIKU_100_50 + Decimal("0.000625") + Decimal("0.0005")
    assert second.cost == cached.cost + SONNET_1000_200


def test_the_figures_of_one_workspace_are_its_own_sums(workspace, november):
    figures = usage.usage([workspace], period())
    assert figures.batches == 2
    assert figures.requests == 6  # stored results: 4 + 2
    haiku_cost = 3 * HAIKU_100_50 + Decimal("0.001125")
    assert figures.cost == (haiku_cost + SONNET_1000_200).quantize(Decimal("0.0001"))
    assert figures.tokens == {
        "input_tokens": 3 * 100 + 1000,
        "output_tokens": 3 * 50 + 200,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 10_000,
    }
    by_model = {row[0]: row for row in figures.by_model.rows}
    assert by_model["claude-sonnet-4-5"][1:] == [1, 1000, 200, 0, 0, Decimal("0.0030")]
    assert by_model["claude-haiku-4-5"][1] == 3
    people = {row[0]: row for row in figures.by_person.rows}
    assert people["owner"][1] == 4 and people["teammate"][1] == 2
    errors = {row[0]: row[1:] for row in figures.errors.rows}
    assert errors == {
        "invalid_request_error": [1, "16.67%"],
        "overloaded_error": [1, "16.67%"],
    }
    assert figures.error_rate == pytest.approx(2 / 6)


def test_buckets_follow_the_period_and_the_time_zone(workspace, november):
    by_day = usage.usage([workspace], period(end=date(2026, 11, 4)))
    assert [row[0] for row in by_day.tokens_over_time.rows] == [
        "Sun 1 Nov 2026",
        "Mon 2 Nov 2026",
        "Tue 3 Nov 2026",
        "Wed 4 Nov 2026",
    ]
    assert [row[1] for row in by_day.tokens_over_time.rows] == [0, 200, 1100, 0]
    # 12:00 UTC on the 2nd is already the 3rd in Auckland (UTC+13 in November).
    auckland = usage.usage(
        [workspace],
        usage.Period(date(2026, 11, 1), date(2026, 11, 4), "day", ZoneInfo("Pacific/Auckland")),
    )
    assert [row[1] for row in auckland.tokens_over_time.rows] == [0, 0, 200, 1100]
    by_month = usage.usage([workspace], period(by="month"))
    assert by_month.tokens_over_time.rows == [["Nov 2026", 1300, 350, 1000, 10_000]]
    by_week = usage.usage([workspace], period(by="week"))
    assert by_week.tokens_over_time.rows[0][0] == "Week of 26 Oct 2026"
    assert by_week.tokens_over_time.rows[1][1] == 1300  # Monday 2 to Sunday 8


def test_turnaround_outcomes_and_sizes_come_from_the_batches(workspace, november):
    figures = usage.usage([workspace], period(end=date(2026, 11, 3)))
    turnaround = {row[0]: row[1:] for row in figures.turnaround.rows}
    assert turnaround["Mon 2 Nov 2026"] == [1, Decimal("1.00"), Decimal("1.00")]
    assert turnaround["Tue 3 Nov 2026"] == [1, Decimal("3.00"), Decimal("3.00")]
    assert turnaround["Sun 1 Nov 2026"] == [0, "", ""]
    outcomes = {row[0]: row[1:] for row in figures.outcomes.rows}
    assert outcomes["Mon 2 Nov 2026"] == [2, 2, 0, 0, 4, "50.00%"]
    sizes = dict(figures.sizes.rows)
    assert sizes["1 to 9"] == 2 and sizes["10 to 99"] == 0


def test_the_median_and_95th_percentile_of_many_batches(workspace):
    for hours in range(1, 21):  # 20 batches on one day, ended 1 to 20 hours after creation
        factories.batch(workspace, created_at=at(5), ended_at=at(5) + timedelta(hours=hours))
    figures = usage.usage([workspace], period(start=date(2026, 11, 5), end=date(2026, 11, 5)))
    # Nearest rank: the 10th and the 19th of the 20 durations.
    assert figures.turnaround.rows == [["Thu 5 Nov 2026", 20, Decimal("10.00"), Decimal("19.00")]]


def test_the_percentiles_of_each_bucket_by_nearest_rank(workspace):
    """Days of 1, 3 and 21 ended batches (and one still running, not counted): each day's
    median and 95th percentile are the durations at ranks ceil(n/2) and ceil(0.95n)."""
    for day, hours in ((2, [7]), (3, [5, 1, 3]), (4, list(range(21, 0, -1)))):
        for took in hours:
            factories.batch(workspace, created_at=at(day), ended_at=at(day) + timedelta(hours=took))
    factories.running_batch(workspace, created_at=at(4))
    figures = usage.usage([workspace], period(start=date(2026, 11, 1), end=date(2026, 11, 4)))
    assert figures.turnaround.rows == [
        ["Sun 1 Nov 2026", 0, "", ""],
        ["Mon 2 Nov 2026", 1, Decimal("7.00"), Decimal("7.00")],
        ["Tue 3 Nov 2026", 3, Decimal("3.00"), Decimal("5.00")],
        ["Wed 4 Nov 2026", 21, Decimal("11.00"), Decimal("20.00")],
    ]


def test_every_workspace_the_viewer_sees_and_no_other(workspace, other, november, teammate):
    assert usage.usage([workspace, other], period()).batches == 3
    names = [row[0] for row in usage.usage([workspace, other], period()).by_workspace.rows]
    assert sorted(names) == ["Research", "Support"]


# The pages


def test_the_usage_page_shows_the_figures_and_a_chart_for_each(client, user, workspace, november):
    client.force_login(user)
    response = client.get(reverse("usage"), {"start": "2026-11-01", "end": "2026-11-30"})
    assert response.status_code == 200
    html = response.content.decode()
    for title in ("Cost by model", "Tokens", "By person", "By workspace", "Errors by type",
                  "Turnaround", "Requests per batch"):  # fmt: skip
        assert title in html
    assert 'id="usage-charts"' in html and "chart-4.6.2.umd.min.js" in html
    assert "overloaded_error" in html
    page = client.get(reverse("workspace_usage", args=[workspace.slug]),
                      {"start": "2026-11-01", "end": "2026-11-30"})  # fmt: skip
    assert "By workspace" not in page.content.decode()
    assert "No monthly budget is set" in page.content.decode()


def test_a_table_downloads_as_csv_with_its_numbers(client, user, workspace, november):
    client.force_login(user)
    response = client.get(
        reverse("workspace_usage", args=[workspace.slug]),
        {"start": "2026-11-01", "end": "2026-11-30", "by": "month", "csv": "models"},
    )
    assert response.status_code == 200
    assert "research-models-20261101-20261130-by-month.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["Model", "Requests", "Input", "Output", "Cache writes", "Cache reads",
                       "Cost (USD)"]  # fmt: skip
    assert ["claude-sonnet-4-5", "1", "1000", "200", "0", "0", "0.0030"] in rows
    missing = client.get(reverse("usage"), {"csv": "nothing-like-it"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "query, message",
    [
        ({"start": "2026-11-30", "end": "2026-11-01"}, "ends before it starts"),
        ({"start": "2020-01-01", "end": "2026-11-30", "by": "day"}, "choose a shorter period"),
        ({"start": "yesterday"}, "Enter a valid date"),
        ({"by": "fortnight"}, "Select a valid choice"),
    ],
)
def test_a_period_the_page_cannot_show_says_why(client, user, workspace, query, message):
    client.force_login(user)
    response = client.get(reverse("usage"), query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_an_empty_period_says_so_in_every_table(client, user, workspace):
    client.force_login(user)
    html = client.get(reverse("workspace_usage", args=[workspace.slug])).content.decode()
    assert "Nothing in this period." in html


# Budgets


def budgeted(workspace, amount="10.00"):
    workspace.monthly_budget = Decimal(amount)
    workspace.save()
    return workspace


def this_month_batch(workspace, cost):
    made = factories.batch(workspace, created_at=timezone.now() - timedelta(minutes=5))
    Batch.objects.filter(pk=made.pk).update(cost=Decimal(cost), totals_at=timezone.now())
    return made


def running_upload_batch(workspace, user, estimate_total, requests=10, of=20):
    """A running batch made from half an upload whose most expensive outcome is given."""
    submission = factories.submission(
        workspace,
        user,
        state="submitted",
        request_count=of,
        estimate={"input_cost": "0", "max_output_cost": estimate_total},
    )
    made = factories.running_batch(workspace, submission=submission)
    SubmissionPart.objects.create(
        submission=submission, index=0, request_count=requests, request_bytes=1, batch=made
    )
    return made


def test_the_budget_counts_spent_committed_and_left(workspace, user):
    budgeted(workspace, "10.00")
    this_month_batch(workspace, "2.5")
    running_upload_batch(workspace, user, "3.00")  # half of the upload: $1.50 committed
    factories.running_batch(workspace)  # made outside: no estimate
    status = budgets.budget_status(workspace)
    assert (status.spent, status.committed, status.left) == (
        Decimal("2.5000"),
        Decimal("1.5000"),
        Decimal("6.0000"),
    )
    assert status.unestimated == 1
    assert status.share_used == pytest.approx(0.4)


def ready_upload(workspace, user, estimate_total, **fields):
    return factories.submission(
        workspace,
        user,
        state="ready",
        request_count=10,
        estimate={
            "input_cost": "0.50",
            "max_output_cost": str(Decimal(estimate_total) - Decimal("0.50")),
        },
        **fields,
    )


def submit(client, submission, **data):
    url = reverse("submission_submit", args=[submission.workspace.slug, submission.key])
    return client.post(url, data, follow=True)


def test_an_upload_under_the_budget_submits(client, teammate, workspace):
    budgeted(workspace, "10.00")
    upload = ready_upload(workspace, teammate, "4.00")
    client.force_login(teammate)
    submit(client, upload)
    upload.refresh_from_db()
    assert upload.state == "submitting"


def test_an_upload_over_the_budget_needs_an_admin(client, user, teammate, workspace):
    budgeted(workspace, "10.00")
    this_month_batch(workspace, "8.00")
    upload = ready_upload(workspace, teammate, "4.00")
    client.force_login(teammate)
    page = client.get(upload.get_absolute_url()).content.decode()
    assert "over the budget" in page and "A workspace admin" in page
    answer = submit(client, upload, over_budget="1").content.decode()
    upload.refresh_from_db()
    assert upload.state == "ready"  # a submitter's confirmation is not an admin's
    assert "$4.00" in answer and "$2.00 is left" in answer
    client.force_login(user)
    refused = submit(client, upload)  # an admin, without ticking the confirmation
    upload.refresh_from_db()
    assert upload.state == "ready" and "Confirm" in refused.content.decode()
    submit(client, upload, over_budget="1")
    upload.refresh_from_db()
    assert upload.state == "submitting" and upload.over_budget_confirmed_by == user


def test_a_spend_cap_refuses_an_upload_that_could_cost_more(client, user, workspace):
    upload = ready_upload(workspace, user, "4.00", spend_cap=Decimal("3.00"))
    client.force_login(user)
    answer = submit(client, upload, over_budget="1").content.decode()
    upload.refresh_from_db()
    assert upload.state == "ready"
    assert "spend cap of $3.00" in answer
    upload.spend_cap = Decimal("5.00")
    upload.save()
    submit(client, upload)
    upload.refresh_from_db()
    assert upload.state == "submitting"


def test_a_budget_far_past_says_so_in_words_the_same_everywhere(client, user, workspace):
    """Over the budget, every page and message says "nothing is left (over by ...)", never a
    negative amount, and a share far past the budget is not a five-digit percentage."""
    from batches.templatetags.batch_tags import budget_share

    budgeted(workspace, "0.01")
    this_month_batch(workspace, "4.76")
    upload = ready_upload(workspace, user, "4.00")
    client.force_login(user)
    pages = [
        client.get(upload.get_absolute_url()).content.decode(),
        client.get(reverse("workspace_usage", args=[workspace.slug])).content.decode(),
        submit(client, upload).content.decode(),  # refused: the admin did not confirm
    ]
    for page in pages:
        assert "$-" not in page and "-4.75" not in page
    assert "nothing is left (over by $4.75)" in pages[0]
    assert "nothing is left of the workspace" in pages[2] and "(over by $4.75)" in pages[2]
    assert "476 times the budget used or committed" in pages[1]
    assert [budget_share(value) for value in (0.4, 1.35, 475.79)] == [
        "40.00%",
        "135%",
        "476 times the budget",
    ]


def test_an_admin_sets_the_budget_in_the_settings(client, user, workspace):
    client.force_login(user)
    response = client.post(
        reverse("workspace_options", args=[workspace.slug]),
        {"monthly_budget": "250.00", "results_downloadable": "on", "daily_tries": "20"},
    )
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.monthly_budget == Decimal("250.00")
    bad_amount = client.post(
        reverse("workspace_options", args=[workspace.slug]),
        {"monthly_budget": "-5", "results_downloadable": "on", "daily_tries": "20"},
    )
    assert bad_amount.status_code == 400


def test_names_in_the_tables_are_text_never_markup(client, user, workspace):
    stored_batch(workspace, at(2), [ok("a", model="<i>odd</i>")], submitted_by=user)
    client.force_login(user)
    html = client.get(reverse("usage"), {"start": "2026-11-01", "end": "2026-11-30"}).content
    assert b"&lt;i&gt;odd&lt;/i&gt;" in html and b"<i>odd</i>" not in html


def test_buckets_follow_the_zone_across_a_change_of_its_offset(workspace):
    """Paris leaves summer time at 01:00 UTC on 25 October 2026: the same 22:30 UTC is past
    midnight before the change and not after it (SQLite's CASE of offsets, PostgreSQL's own)."""
    for created in (
        datetime(2026, 10, 24, 22, 30, tzinfo=UTC),  # 00:30 on the 25th, summer time
        datetime(2026, 10, 25, 22, 30, tzinfo=UTC),  # 23:30 on the 25th, winter time
        datetime(2026, 10, 26, 23, 30, tzinfo=UTC),  # 00:30 on the 27th
    ):
        stored_batch(workspace, created, [ok("a")])
    paris = ZoneInfo("Europe/Paris")
    by_day = usage.usage(
        [workspace], usage.Period(date(2026, 10, 24), date(2026, 10, 27), "day", paris)
    )
    assert [row[1] for row in by_day.tokens_over_time.rows] == [0, 200, 0, 100]
    by_week = usage.usage(
        [workspace], usage.Period(date(2026, 10, 19), date(2026, 11, 1), "week", paris)
    )
    assert [row[1] for row in by_week.tokens_over_time.rows] == [200, 100]  # Sunday 25, Tuesday 27
    by_month = usage.usage(
        [workspace], usage.Period(date(2026, 10, 1), date(2026, 10, 31), "month", paris)
    )
    assert by_month.tokens_over_time.rows[0][1] == 300
