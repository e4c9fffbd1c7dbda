"""From upload to answers: the CSV with answers appended, and resubmitting what failed."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches import ingestion, mirror, submissions
from batches.models import Batch, BatchRequest, Submission
from tests.helpers import run_checks

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def submit(workspace, user, upload, **options):
    submission = submissions.create_submission(workspace, user, upload, **options)
    run_checks()
    submission.refresh_from_db()
    assert submission.state == Submission.State.READY, submission.problems
    assert submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.SUBMITTED, submission.submit_error
    return submission


def finish(workspace, frozen_now):
    frozen_now.shift(3600)
    report = mirror.sync_workspace(workspace.pk)
    for batch_id in report.to_ingest:
        ingestion.ingest_results(batch_id)


def test_it_gives_the_csv_back_with_answers_in_the_original_order(
    owner_client, workspace, user, frozen_now
):
    upload = SimpleUploadedFile("reviews.csv", (SAMPLES / "reviews.csv").read_bytes())
    options = {
        "template": "Classify as positive, negative or neutral (one word): {review}",
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "id_column": "review_id",
    }
    submission = submit(workspace, user, upload, csv_options=options)
    finish(workspace, frozen_now)
    batch = Batch.objects.get(submission=submission)
    page = owner_client.get(batch.get_absolute_url()).content.decode()
    assert "Your CSV with answers" in page
    response = owner_client.get(f"{batch.get_absolute_url()}download/answers.csv")
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    original = list(csv.reader(io.StringIO((SAMPLES / "reviews.csv").read_text("utf-8"))))
    assert rows[0] == [*original[0], "answer", "result_type", "error"]
    assert [row[:2] for row in rows[1:]] == [row[:2] for row in original[1:] if row]
    assert all(row[-2] == "succeeded" and row[-3] for row in rows[1:])


def test_it_resubmits_the_errored_requests_as_a_new_linked_upload(
    owner_client, workspace, user, frozen_now
):
    lines = []
    for number in range(6):
        model = "claude-haiku-4-5" if number % 3 else "claude-unknown-model-9"
        params = {"model": model, "max_tokens": 16,
                  "messages": [{"role": "user", "content": f"Question {number}"}]}  # fmt: skip
        lines.append(json.dumps({"custom_id": f"q-{number}", "params": params}))
    upload = SimpleUploadedFile("mixed.jsonl", "\n".join(lines).encode())
    submission = submit(workspace, user, upload)
    finish(workspace, frozen_now)
    batch = Batch.objects.get(submission=submission)
    assert batch.errored == 2, batch.counts
    page = owner_client.get(batch.get_absolute_url()).content.decode()
    assert 'id="dlg-resubmit"' in page
    result_page = owner_client.get(f"{batch.get_absolute_url()}results/q-1/").content.decode()
    assert "Question 1" in result_page and "Request not stored here" not in result_page

    response = owner_client.post(
        f"{batch.get_absolute_url()}resubmit/", {"kinds": ["retryable", "invalid"]}
    )
    again = Submission.objects.exclude(pk=submission.pk).get()
    assert response.status_code == 302 and response["Location"] == again.get_absolute_url()
    run_checks()
    again.refresh_from_db()
    assert again.resubmission_of == batch
    # Invalid requests go back as they were: intake flags them for a fix before any submit.
    assert again.state == Submission.State.HAS_PROBLEMS and again.problem_count == 2
    assert again.source_filename.endswith(".jsonl")
    stored = BatchRequest.objects.filter(submission=submission, custom_id__in=["q-0", "q-3"])
    assert stored.count() == 2


def test_resubmitting_nothing_that_matches_says_so(owner_client, workspace, user, frozen_now):
    upload = SimpleUploadedFile("q.jsonl", (SAMPLES / "questions.jsonl").read_bytes())
    submission = submit(workspace, user, upload)
    finish(workspace, frozen_now)
    batch = Batch.objects.get(submission=submission)
    response = owner_client.post(
        f"{batch.get_absolute_url()}resubmit/", {"kinds": ["expired"]}, follow=True
    )
    assert "No stored requests match" in response.content.decode()
    # Every request succeeded: the page offers no Resubmit, and says why.
    page = owner_client.get(batch.get_absolute_url()).content.decode()
    assert "Every request succeeded: there is nothing to resubmit." in page
    assert 'data-dialog="dlg-resubmit"' not in page
