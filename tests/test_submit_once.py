"""Submit exactly once: double posts, retried tasks, lost create answers."""

import json
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from batches import submissions
from batches.models import Batch, BatchRequest, Submission
from emulator.faults import set_key_faults
from emulator.models import EmulatedBatch
from tests.helpers import run_checks
from tests.mirror import KEY

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def upload(workspace, user, name="questions.jsonl", content=None, **kwargs):
    """An upload, checked (as the worker would check it right after)."""
    data = content if content is not None else (SAMPLES / name).read_bytes()
    submission = submissions.create_submission(
        workspace, user, SimpleUploadedFile(name, data), name="Questions", **kwargs
    )
    run_checks()
    submission.refresh_from_db()
    return submission


@pytest.fixture
def models_known(workspace):
    from django.utils import timezone

    from batches.client import ApiClient
    from batches.mirror import refresh_models

    with ApiClient.for_workspace(workspace) as client:
        refresh_models(workspace, client, timezone.now())
    workspace.refresh_from_db()
    return workspace


def test_a_clean_file_is_submitted_as_one_batch_with_its_requests_kept(models_known, user):
    submission = upload(models_known, user)
    assert submission.state == Submission.State.READY
    assert submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.SUBMITTED
    batch = Batch.objects.get()
    assert batch.submitted_by == user and batch.submission == submission
    assert batch.source_filename == "questions.jsonl" and batch.name == "Questions"
    assert batch.total == 4 and not batch.created_outside
    assert BatchRequest.objects.filter(submission=submission).count() == 4
    assert EmulatedBatch.objects.count() == 1


def test_a_double_post_submits_once(models_known, owner_client, django_capture_on_commit_callbacks):
    submission = upload(models_known, models_known.members.first())
    url = reverse("submission_submit", args=[models_known.slug, submission.key])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = owner_client.post(url)
        second = owner_client.post(url, follow=True)
    assert first.status_code == 302
    enqueued = [callback for callback in callbacks if "submit_submission" in repr(callback)]
    assert len(enqueued) == 1  # one task enqueued for two clicks
    assert b"already submitted; nothing was sent twice" in second.content
    submissions.create_batches(submission.pk)
    submissions.create_batches(submission.pk)  # a retried task
    assert EmulatedBatch.objects.count() == 1 and Batch.objects.count() == 1


def test_a_lost_create_answer_is_recovered_without_a_second_batch(models_known, user):
    set_key_faults(KEY, lose_create_answers=1)
    submission = upload(models_known, user)
    submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.SUBMITTED
    assert EmulatedBatch.objects.count() == 1  # the API has exactly one
    assert Batch.objects.get().api_id == EmulatedBatch.objects.get().batch_id
    assert submission.parts.get().create_attempts == 1  # adopted, not created again


def test_a_lost_answer_on_every_attempt_fails_cleanly_and_try_again_adopts(models_known, user):
    set_key_faults(KEY, rate_500=1.0)
    submission = upload(models_known, user)
    submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.FAILED
    assert "api_error" in submission.submit_error
    set_key_faults(KEY, rate_500=0.0, lose_create_answers=1)
    assert submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    set_key_faults(KEY, lose_create_answers=0)
    assert submissions.request_submit(submission) is False  # submitted: no third try
    assert submission.state == Submission.State.SUBMITTED
    assert EmulatedBatch.objects.count() == 1


def test_a_file_with_problems_cannot_be_submitted(models_known, user):
    submission = upload(models_known, user, content=b'{"custom_id": "a"}\n')
    assert submission.state == Submission.State.HAS_PROBLEMS
    assert not submissions.request_submit(submission)
    assert not EmulatedBatch.objects.exists()


def test_a_file_over_the_limit_goes_in_several_batches(models_known, user, settings):
    settings.MAX_BATCH_REQUESTS = 2
    submission = upload(models_known, user)
    assert [part.request_count for part in submission.parts.all()] == [2, 2]
    submissions.request_submit(submission)
    submissions.create_batches(submission.pk)
    names = sorted(Batch.objects.values_list("name", flat=True))
    assert names == ["Questions (part 1 of 2)", "Questions (part 2 of 2)"]
    assert EmulatedBatch.objects.count() == 2
    assert sorted(BatchRequest.objects.values_list("part", flat=True)) == [0, 0, 1, 1]


def test_a_csv_submission_builds_its_requests_from_the_template(models_known, user):
    submission = upload(
        models_known,
        user,
        name="reviews.csv",
        csv_options={
            "template": "Classify as positive, negative or neutral (one word): {review}",
            "id_column": "review_id",
            "model": "claude-haiku-4-5",
            "max_tokens": 5,
        },
    )
    assert submission.state == Submission.State.READY, submission.problems
    submissions.request_submit(submission)
    submissions.create_batches(submission.pk)
    request = BatchRequest.objects.get(custom_id="r5")
    assert request.line == 6
    assert request.load()["params"]["messages"][0]["content"].endswith("merci !")


def test_a_lost_answer_with_two_lookalike_batches_asks_a_person(models_known, user):
    # Another tool submits a batch of the same size while our answer is lost.
    set_key_faults(KEY, lose_create_answers=1, lookalikes_with_lost_answer=1)
    submission = upload(models_known, user)
    submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.FAILED
    assert "cannot tell which one is this file's" in submission.submit_error
    assert EmulatedBatch.objects.count() == 2  # ours (answer lost) and the lookalike
    assert not Batch.objects.exists()  # nothing adopted on a guess


def test_a_submission_whose_task_was_lost_is_handed_out_again(models_known, user):
    import time_machine
    from django.utils import timezone

    from batches import tasks

    submission = upload(models_known, user)
    submissions.request_submit(submission)  # ... and the task never ran
    assert submissions.stalled_submissions(timezone.now()) == []  # not yet: it may be queued
    with time_machine.travel(timezone.now() + submissions.SUBMIT_STALL * 2, tick=False):
        assert submissions.stalled_submissions(timezone.now()) == [submission.pk]
        tasks.submit_submission.apply((submission.pk,))
        assert submissions.stalled_submissions(timezone.now()) == []
    submission.refresh_from_db()
    assert submission.state == Submission.State.SUBMITTED
    assert EmulatedBatch.objects.count() == 1


def test_an_unexpected_error_fails_the_submission_instead_of_leaving_it_submitting(
    models_known, user
):
    submission = upload(models_known, user)
    submissions.request_submit(submission)
    part = submission.parts.get()
    body = part.body.read()
    part.body.storage.delete(part.body.name)  # the stored body is gone (a bucket emptied)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.FAILED
    assert "FileNotFoundError" in submission.submit_error
    part.body.storage.save(part.body.name, ContentFile(body))
    assert submissions.request_submit(submission)  # the user can try again
    assert submissions.create_batches(submission.pk).state == Submission.State.SUBMITTED


def test_a_create_that_was_turned_away_never_adopts_a_lookalike_later(models_known, user):
    from emulator.testing import make_batch

    set_key_faults(KEY, rate_429=1.0)
    submission = upload(models_known, user)
    submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.FAILED  # rate-limited every time: nothing made
    lookalike = make_batch(KEY, submission.request_count, prefix="teammate")
    set_key_faults(KEY, rate_429=0.0)
    submissions.request_submit(submission)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.SUBMITTED
    assert Batch.objects.get().api_id != lookalike.batch_id
    assert EmulatedBatch.objects.count() == 2


def test_a_submit_pressed_while_the_file_is_being_checked_waits_for_the_report(models_known, user):
    data = (SAMPLES / "questions.jsonl").read_bytes()
    submission = submissions.create_submission(
        models_known, user, SimpleUploadedFile("q.jsonl", data)
    )
    assert submission.state == Submission.State.CHECKING
    assert not submissions.request_submit(submission)  # nothing to send before the report
    assert not submissions.request_submit(submission, valid_only=True)
    run_checks()
    assert submissions.request_submit(submission)
    submissions.create_batches(submission.pk)
    assert EmulatedBatch.objects.count() == 1


def test_the_valid_part_of_a_file_is_sent_only_when_asked(models_known, user):
    good = (SAMPLES / "questions.jsonl").read_bytes()
    submission = upload(models_known, user, content=good + b'{"custom_id": "broken"}\n')
    assert submission.state == Submission.State.HAS_PROBLEMS
    assert submission.request_count == 4 and submission.rejected_count == 1
    assert not submissions.request_submit(submission)
    assert submissions.request_submit(submission, valid_only=True)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.SUBMITTED and submission.submit_valid_only
    assert EmulatedBatch.objects.get().request_count == 4


def test_the_create_body_is_what_the_check_wrote_byte_for_byte(models_known, user):
    lines = (SAMPLES / "questions.jsonl").read_bytes().splitlines()
    submission = upload(models_known, user, content=b"\n".join(lines) + b"\n")
    body = submission.parts.get().body.read()
    assert body == b'{"requests":[\n' + b",\n".join(lines) + b"\n]}"
    assert json.loads(body)["requests"][0]["custom_id"] == json.loads(lines[0])["custom_id"]
