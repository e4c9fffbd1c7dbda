"""A batch's downloads: the raw JSONL as the API sent it, and a flat CSV."""

import csv
import gzip
import io

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from batches import totals
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
    assert batch.output_tokens == 150 and batch.cost > 0 and not batch.cost_incomplete
