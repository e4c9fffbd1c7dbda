"""A batch's results: the explorer, one result, and its raw line."""

import gzip
import json

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from batches import downloads
from batches.models import Result
from tests import factories

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
LINE = {"custom_id": "req-0001", "result": {"type": "succeeded", "message": {"id": "m1"}}}


def url(batch, suffix=""):
    return f"{batch.get_absolute_url()}{suffix}"


def test_the_explorer_filters_and_searches(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace), 40)
    page = owner_client.get(url(batch, "results/"))
    assert len(page.context["results"]) == 40
    assert "invalid_request_error (10)" in page.content.decode()
    errored = owner_client.get(url(batch, "results/"), {"error_type": "invalid_request_error"})
    assert {r.result_type for r in errored.context["results"]} == {"errored"}
    stop = owner_client.get(url(batch, "results/"), {"stop_reason": "end_turn"})
    assert len(stop.context["results"]) == 30
    searched = owner_client.get(url(batch, "results/"), {"q": "Answer <b>12<"})
    assert [r.custom_id for r in searched.context["results"]] == ["req-0012"]
    fragment = owner_client.get(url(batch, "results/"), {"q": "0012"}, **HX)
    body = fragment.content.decode()
    assert "<html" not in body and "req-0012" in body and "&lt;b&gt;" in body


def test_the_results_page_pages_by_custom_id(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace), 120, every_errored=10)
    results = url(batch, "results/")
    first = owner_client.get(results)
    assert first.context["results"][0].custom_id == "req-0000"
    assert len(first.context["results"]) == 50 and first.context["has_next"]
    second = owner_client.get(results, {"after": first.context["last_id"]})
    assert second.context["results"][0].custom_id == "req-0050"
    back = owner_client.get(results, {"before": second.context["first_id"]})
    assert [r.custom_id for r in back.context["results"]] == [
        r.custom_id for r in first.context["results"]
    ]
    assert not back.context["has_previous"]
    errored = owner_client.get(results, {"type": "errored"})
    assert {r.result_type for r in errored.context["results"]} == {"errored"}
    assert len(errored.context["results"]) == 12


def test_one_result_shows_the_answer_safely_with_previous_and_next(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace), 4)
    html = owner_client.get(url(batch, "results/req-0001/")).content.decode()
    assert "Answer &lt;b&gt;1&lt;/b&gt;" in html and "<b>1</b>" not in html
    assert "results/req-0000/" in html and "results/req-0002/" in html
    assert "Request not stored here" in html
    # The answer's text has a copy button, its text escaped in the attribute.
    assert 'data-copy="Answer &lt;b&gt;1&lt;/b&gt;" aria-label="Copy the answer text"' in html
    raw = owner_client.get(url(batch, "results/req-0001/raw/"), **HX).content.decode()
    assert "rebuilt from the stored result" in raw and "&quot;custom_id&quot;" in raw


def test_the_raw_json_comes_from_the_stored_file(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace), 4)
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(json.dumps(LINE).encode())))
    raw = owner_client.get(url(batch, "results/req-0001/raw/")).content.decode()
    assert "as the API sent it" in raw and "m1" in raw


def test_the_raw_json_scan_stops_at_the_first_match(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace), 4)
    # A broken tail after the match: a scan that read the whole file would fail on it.
    stored = gzip.compress(json.dumps(LINE).encode() + b"\n")[:-8] + b"broken!!"
    batch.results_file.save("r.jsonl.gz", ContentFile(stored))
    raw = owner_client.get(url(batch, "results/req-0001/raw/")).content.decode()
    assert "as the API sent it" in raw and "m1" in raw


def test_a_results_file_too_big_to_scan_is_not_read(workspace):
    batch = factories.with_results(factories.batch(workspace), 4)
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(json.dumps(LINE).encode())))
    size = batch.results_file.size
    line = downloads.raw_result_line(batch, "req-0001", max_bytes=size)
    assert line is not None and line["result"]["message"]
    assert downloads.raw_result_line(batch, "req-0001", max_bytes=size - 1) is None


def test_the_search_index_finds_what_reading_the_batch_finds(owner_client, workspace):
    """Once batches.search wrote a batch's search text (PostgreSQL), the explorer searches the
    trigram index; elsewhere, or before, it reads the results. Both give the same rows."""
    from batches import search
    from batches.models import Batch, Result

    batch = factories.with_results(factories.batch(workspace), 40)
    Result.objects.filter(batch=batch, custom_id="req-0005").update(answer_text="50% off_Sale")
    Result.objects.filter(batch=batch, custom_id="req-0006").update(answer_text="500 offxSale")
    queries = ["answer <B>1", "MODEL: BAD", "req-003", "0% off_", "no such text", "ab"]

    def found():
        return {q: [r.custom_id for r in owner_client.get(url(batch, "results/"), {"q": q},
                                                            **HX).context["results"]]
                for q in queries}  # fmt: skip

    by_reading = found()
    assert by_reading["0% off_"] == ["req-0005"]  # % and _ are text, not wildcards
    assert by_reading["MODEL: BAD"] and by_reading["no such text"] == []
    written = search.index_results(batch.pk)
    batch.refresh_from_db()
    if connection_is_postgresql():
        assert written == 40 and search.is_indexed(batch)
    else:
        assert written == 0 and not search.is_indexed(batch)
    assert found() == by_reading
    # Results stored again: the index no longer matches them and is not used until rewritten.
    stored_at = batch.results_ingested_at
    assert stored_at is not None
    Batch.objects.filter(pk=batch.pk).update(
        results_ingested_at=stored_at.replace(microsecond=(stored_at.microsecond + 1) % 1_000_000)
    )
    batch.refresh_from_db()
    assert not search.is_indexed(batch)
    # Deleting the batch deletes its results and their search text, none read into memory.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from batches.models import ResultText

    with CaptureQueriesContext(connection) as deleting:
        batch.delete()
    assert not Result.objects.exists() and not ResultText.objects.exists()
    read = [q["sql"] for q in deleting.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in read if 'FROM "batches_result"' in sql], read


def connection_is_postgresql() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def test_batch_and_results_pages_keep_a_constant_number_of_queries(
    owner_client, workspace, django_assert_max_num_queries
):
    small = factories.with_results(factories.batch(workspace), 8)
    large = factories.with_results(factories.batch(workspace), 300, every_errored=3)
    pages = ["", "results/", "results/?type=errored", "results/?q=Answer", "results/req-0002/"]
    for page in pages:
        # Each batch's first view: its result summaries are counted, not read from the cache.
        with django_assert_max_num_queries(30) as few:
            owner_client.get(url(small, page))
        with django_assert_max_num_queries(len(few.captured_queries)):
            owner_client.get(url(large, page))


def test_newer_answer_shapes_are_shown_as_what_they_are(owner_client, workspace):
    batch = factories.batch(workspace)
    content = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
         "input": {"query": "batch api pricing"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "url": "https://docs.example.com/pricing",
             "title": "Pricing", "page_age": "2 days"},
            {"type": "web_search_result", "url": "javascript:alert(1)", "title": "Sneaky"},
        ]},
        {"type": "text", "text": "Half price.", "citations": [
            {"type": "web_search_result_location", "url": "https://docs.example.com/pricing",
             "title": "Pricing", "cited_text": "50% of standard prices"}]},
    ]  # fmt: skip
    Result.objects.bulk_create([
        factories.succeeded(batch, "searched", content=content, stop_reason="pause_turn",
                            cache_read_input_tokens=1200),
        factories.succeeded(batch, "declined", stop_reason="refusal"),
    ])  # fmt: skip

    def page_of(custom_id):
        address = reverse("result_detail", args=[workspace.slug, batch.api_id, custom_id])
        return owner_client.get(address).content.decode()

    page = page_of("searched")
    assert "Searched the web for “batch api pricing”" in page
    assert 'href="https://docs.example.com/pricing"' in page and "2 days" in page
    assert 'href="javascript' not in page and "Sneaky" in page  # shown, never a link
    assert "“50% of standard prices”" in page
    assert "The turn was paused" in page and "1,200 read" in page
    declined = page_of("declined")
    assert "Claude declined to answer this request" in declined
    assert "declined to answer" in declined
