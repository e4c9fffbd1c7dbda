"""A batch's downloads: the raw JSONL as the API sent it, and a flat CSV."""

import csv
import gzip
import io

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from batches import labels, totals
from batches.models import AuditEntry
from tests import factories

pytestmark = pytest.mark.django_db


def url(batch, suffix=""):
    return f"{batch.get_absolute_url()}{suffix}"


def streamed(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def test_it_streams_the_raw_jsonl_and_a_flat_csv(owner_client, workspace):
    batch = factories.with_results(factories.batch(workspace, name="Nightly eval"), 8)
    original = b'{"custom_id":"req-0000","result":{"type":"succeeded"}}\n'
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(original)))
    response = owner_client.get(url(batch, "download/results.jsonl"))
    assert streamed(response) == original
    day = timezone.localdate().isoformat()
    assert f'filename="nightly-eval-{day}-results.jsonl"' in response["Content-Disposition"]
    response = owner_client.get(url(batch, "download/results.csv"))
    rows = list(csv.reader(io.StringIO(streamed(response).decode("utf-8-sig"))))
    assert rows[0][:3] == ["custom_id", "result_type", "answer"]
    assert len(rows) == 9 and rows[1][0] == "req-0000" and rows[4][9] == "invalid_request_error"


def test_it_answers_404_for_downloads_that_do_not_exist_yet(owner_client, workspace):
    batch = factories.running_batch(workspace)
    for suffix in ("download/results.jsonl", "download/results.csv", "download/answers.csv"):
        assert owner_client.get(url(batch, suffix)).status_code == 404


def test_totals_price_results_per_model(workspace):
    batch = factories.with_results(factories.batch(workspace), 4)
    totals.store_totals([batch])
    batch.refresh_from_db()
    assert batch.output_tokens == 150 and not batch.cost_incomplete
    assert batch.cost is not None and batch.cost > 0


# Every database writes the same bytes: PostgreSQL's COPY and the rows read by key elsewhere.
# The batch's name and labels end every row (a name that looks like a formula, too).
ABOUT = '"\'=HYPERLINK(""x"")","eval, night\'s run"'
EXPECTED_FLAT = (
    "\ufeffcustom_id,result_type,answer,stop_reason,model,input_tokens,output_tokens,"
    "cache_creation_input_tokens,cache_read_input_tokens,error_type,error_message,batch_name,"
    "batch_labels\n"
    f"'-leading-dash,succeeded,'=SUM(A1:A9),end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n"
    f'a-comma,succeeded,"one, two ""three""",end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n'
    f'b-lines,succeeded,"first\nsecond\r\nthird",end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n'
    "c-tab,succeeded,'\tindented \\N \\. back\\slash,end_turn,claude-haiku-4-5,100,50,0,0,,,"
    f"{ABOUT}\n"
    f"d-error,errored,,,,0,0,0,0,invalid_request_error,'@mention: bad,{ABOUT}\n"
    f"e-space,succeeded,' =1+1,end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n"
    f'f-newline,succeeded,"\'\n\u3000@cmd",end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n'
    f"g-wide,succeeded,'\uff1d1+1,end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n"
    f"h-plain,succeeded, a = b,end_turn,claude-haiku-4-5,100,50,0,0,,,{ABOUT}\n"
)


def test_the_flat_csv_is_the_same_on_every_database_and_never_a_formula(owner_client, workspace):
    from batches.models import Result

    batch = factories.batch(workspace, name='=HYPERLINK("x")')
    labels.set_labels(batch, ["eval", "night's run"])
    Result.objects.bulk_create([
        factories.succeeded(batch, "-leading-dash", text="=SUM(A1:A9)"),
        factories.succeeded(batch, "a-comma", text='one, two "three"'),
        factories.succeeded(batch, "b-lines", text="first\nsecond\r\nthird"),
        factories.succeeded(batch, "c-tab", text="\tindented \\N \\. back\\slash"),
        factories.errored(batch, "d-error", error_message="@mention: bad"),
        factories.succeeded(batch, "e-space", text=" =1+1"),
        factories.succeeded(batch, "f-newline", text="\n\u3000@cmd"),
        factories.succeeded(batch, "g-wide", text="\uff1d1+1"),
        factories.succeeded(batch, "h-plain", text=" a = b"),
    ])  # fmt: skip
    batch.results_ingested = 9
    batch.save(update_fields=["results_ingested"])
    body = streamed(owner_client.get(url(batch, "download/results.csv"))).decode("utf-8")
    assert body == EXPECTED_FLAT


def export(*args) -> bytes:
    """`manage.py exportresults ARGS` to standard output, as bytes."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    call_command("exportresults", *args, stdout=out)
    out.flush()
    return out.buffer.getvalue()


def test_exportresults_writes_what_the_download_buttons_give(owner_client, workspace, tmp_path):
    batch = factories.with_results(factories.batch(workspace, name="Nightly eval"), 8)
    original = b'{"custom_id":"req-0000","result":{"type":"succeeded"}}\n'
    batch.results_file.save("r.jsonl.gz", ContentFile(gzip.compress(original)))
    assert export(batch.api_id) == original
    page_csv = streamed(owner_client.get(url(batch, "download/results.csv")))
    assert export(batch.api_id, "--format", "csv") == page_csv
    target = tmp_path / "results.csv"
    call_command("exportresults", batch.api_id, "--format", "csv", "--output", str(target))
    assert target.read_bytes() == page_csv
    assert not list(tmp_path.glob("*.partial"))
    assert AuditEntry.objects.filter(action="download", target__contains=batch.api_id).count() == 4


def test_exportresults_says_why_it_cannot(workspace):
    running = factories.running_batch(workspace)
    with pytest.raises(CommandError, match="No batch 'msgbatch_nope' is known here"):
        export("msgbatch_nope")
    with pytest.raises(CommandError, match="has no stored results file"):
        export(running.api_id)
    with pytest.raises(CommandError, match="did not come from a CSV upload"):
        export(running.api_id, "--format", "answers")
    with pytest.raises(CommandError, match="invalid choice: 'xml'"):
        export(running.api_id, "--format", "xml")
