"""Submit exactly once: double posts, retried tasks, lost create answers."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from batches import submissions
from batches.models import Batch, BatchRequest, Submission
from emulator.faults import set_key_faults
from emulator.models import EmulatedBatch
from tests.mirror import KEY

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def upload(workspace, user, name="questions.jsonl", content=None, **kwargs):
    data = content if content is not None else (SAMPLES / name).read_bytes()
    return submissions.create_submission(
        workspace, user, SimpleUploadedFile(name, data), name="Questions", **kwargs
    )


@pytest.fixture
def models_known(workspace):
    from django.utils import timezone

    from batches.api import ApiClient
    from batches.sync import refresh_models

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
    assert len(callbacks) == 1  # one task enqueued for two clicks
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
    assert request.params["messages"][0]["content"].endswith("merci !")


def test_a_lost_answer_with_two_lookalike_batches_asks_a_person(models_known, user, monkeypatch):
    from emulator.testing import make_batch

    set_key_faults(KEY, lose_create_answers=1)
    submission = upload(models_known, user)
    submissions.request_submit(submission)
    original_find = submissions._find_lost_batch

    def find_after_a_lookalike(client, part):
        # Another tool submits a batch of the same size while our answer is lost.
        make_batch(KEY, part.request_count, prefix="lookalike")
        return original_find(client, part)

    monkeypatch.setattr(submissions, "_find_lost_batch", find_after_a_lookalike)
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
    models_known, user, monkeypatch
):
    submission = upload(models_known, user)
    submissions.request_submit(submission)

    def broken(submission):
        raise RuntimeError("disk full")

    monkeypatch.setattr(submissions, "store_requests", broken)
    submission = submissions.create_batches(submission.pk)
    assert submission.state == Submission.State.FAILED
    assert "RuntimeError" in submission.submit_error
    assert submissions.request_submit(submission)  # the user can try again


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


def test_a_submit_pressed_while_the_file_is_checked_again_wins(models_known, user, monkeypatch):
    from batches import intake

    submission = upload(models_known, user)
    real_validate = intake.validate_file

    def validate_while_someone_submits(*args, **kwargs):
        report = real_validate(*args, **kwargs)
        assert submissions.request_submit(submission)  # the Submit click lands meanwhile
        return report

    monkeypatch.setattr(intake, "validate_file", validate_while_someone_submits)
    submissions.validate_submission(submission)
    submission.refresh_from_db()
    assert submission.state == Submission.State.SUBMITTING
    assert submission.parts.count() == 1
    submissions.create_batches(submission.pk)
    assert EmulatedBatch.objects.count() == 1
