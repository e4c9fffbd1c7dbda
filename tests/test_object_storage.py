"""Every file through the storage API: the whole path on S3 (moto's server, a real S3 API in
its own process), with nothing written to local storage."""

import csv
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from batches import ingestion, mirror, submissions
from batches.models import Batch, Submission
from foundations.storage import read_range, stream
from tests.helpers import run_checks

# Both tests start moto's S3 server in its own process (tests/processes.py, `s3_server`).
pytestmark = [pytest.mark.django_db, pytest.mark.integration]
SAMPLES = Path(__file__).parent / "fixtures" / "samples"
OPTIONS = {
    "template": "Classify as positive, negative or neutral (one word): {review}",
    "id_column": "review_id",
    "model": "claude-haiku-4-5",
    "max_tokens": "16",
}


def test_the_storage_streams_a_file_and_its_byte_ranges(object_storage):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    name = default_storage.save("probe/data.bin", ContentFile(bytes(range(256)) * 100))
    with stream(name) as reader:
        assert reader.read(3) == b"\x00\x01\x02"
        assert len(reader.read()) == 25_597
    assert read_range(name, 254, 4) == b"\xfe\xff\x00\x01"
    with stream(name, 25_590, 25_600) as reader:
        assert reader.read() == bytes(range(246, 256))
    assert object_storage.keys() == [name]


def test_an_upload_is_checked_submitted_ingested_and_downloaded_through_s3(
    object_storage, owner_client, workspace, frozen_now, settings
):
    local = Path(settings.MEDIA_ROOT)
    before = set(local.rglob("*")) if local.exists() else set()
    response = owner_client.post(
        reverse("upload", args=[workspace.slug]),
        {
            "file": SimpleUploadedFile("reviews.csv", (SAMPLES / "reviews.csv").read_bytes()),
            "oversize": "split",
            "name": "Reviews",
        },
    )
    submission = Submission.objects.get()
    assert response.status_code == 302
    owner_client.post(
        reverse("submission_template", args=[workspace.slug, submission.key]), OPTIONS
    )
    assert run_checks() == ["ready"]
    submission.refresh_from_db()
    assert submission.state == Submission.State.READY and submission.request_count == 5
    assert submissions.request_submit(submission)
    assert submissions.create_batches(submission.pk).state == Submission.State.SUBMITTED
    frozen_now.shift(3600)
    for batch_id in mirror.sync_workspace(workspace.pk).to_ingest:
        ingestion.ingest_results(batch_id)
    batch = Batch.objects.get()
    assert batch.results_ingested == 5

    keys = object_storage.keys()
    prefix = f"uploads/{workspace.slug}/{submission.key}/"
    assert f"{prefix}reviews.csv" in keys and f"{prefix}part-1.json" in keys
    assert any(key.startswith(f"results/{workspace.slug}/") for key in keys)
    after = set(local.rglob("*")) if local.exists() else set()
    assert after == before  # nothing stored on this machine's disk

    url = batch.get_absolute_url()
    raw = b"".join(owner_client.get(f"{url}download/results.jsonl").streaming_content)
    assert len(raw.strip().splitlines()) == 5
    flat = b"".join(owner_client.get(f"{url}download/results.csv").streaming_content)
    assert len(list(csv.reader(io.StringIO(flat.decode("utf-8-sig"))))) == 6
    answers = b"".join(owner_client.get(f"{url}download/answers.csv").streaming_content)
    rows = list(csv.reader(io.StringIO(answers.decode("utf-8-sig"))))
    assert [row[0] for row in rows] == ["review_id", "r1", "r2", "r3", "r4", "r5"]
    page = owner_client.get(f"{url}results/r5/").content.decode()
    assert "merci" in page  # the request beside its answer, read back from the body on S3
    raw_fragment = owner_client.get(f"{url}results/r5/raw/", HTTP_HX_REQUEST="true")
    assert "the results file as the API sent it" in raw_fragment.content.decode()
