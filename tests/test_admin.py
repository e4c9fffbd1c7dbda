from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches import submissions
from batches.models import Batch, BatchRequest, Result, Submission, Workspace

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def test_every_model_has_a_working_admin_that_never_shows_the_key(admin_client, workspace, user):
    data = (SAMPLES / "questions.jsonl").read_bytes()
    submission = submissions.create_submission(
        workspace, user, SimpleUploadedFile("questions.jsonl", data)
    )
    submissions.request_submit(submission)
    submissions.create_batches(submission.pk)
    for model in (Workspace, Batch, Result, Submission, BatchRequest):
        meta = model._meta
        listing = admin_client.get(f"/admin/{meta.app_label}/{meta.model_name}/")
        assert listing.status_code == 200, meta.model_name
        first = model.objects.first()
        if first is not None:
            page = admin_client.get(f"/admin/{meta.app_label}/{meta.model_name}/{first.pk}/change/")
            assert page.status_code == 200, meta.model_name
            assert workspace.api_key not in page.content.decode()
