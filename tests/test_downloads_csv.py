"""The person's own CSV with answers appended: rows found exactly as intake found them."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches.models import Batch
from tests.test_dashboard_flows import finish, submit

pytestmark = pytest.mark.django_db

UPLOAD = (
    "review_id,review\r\n"
    'r1,The 27" monitor is great\r\n'  # a quote inside an unquoted cell is text
    'r2,"Two lines:\r\nthe stand wobbles, ""a lot"""\r\n'  # a quoted cell over two lines
    "r3,Arrived on time\r\n"
    'r4,A 15" laptop and a 13" one\r\n'
    "r5,Nothing to add\r\n"
)


def answered(workspace, user, frozen_now, template: str) -> Batch:
    """The batch of UPLOAD with this template, ended and its results stored."""
    upload = SimpleUploadedFile("inches.csv", UPLOAD.encode())
    options = {"template": template, "model": "claude-haiku-4-5", "max_tokens": 64,
               "id_column": "review_id"}  # fmt: skip
    submission = submit(workspace, user, upload, csv_options=options)
    finish(workspace, frozen_now)
    return Batch.objects.get(submission=submission)


def test_it_keeps_each_rows_answer_when_a_cell_holds_an_inch_mark(
    owner_client, workspace, user, frozen_now
):
    batch = answered(workspace, user, frozen_now, "{review_id} {review}")
    response = owner_client.get(f"{batch.get_absolute_url()}download/answers.csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["review_id", "review", "answer", "result_type", "error"]
    assert [row[0] for row in rows[1:]] == ["r1", "r2", "r3", "r4", "r5"]
    assert rows[2][1] == 'Two lines:\nthe stand wobbles, "a lot"'
    for row in rows[1:]:
        # The sandbox's answer starts by quoting the prompt, which starts with the row's own id.
        assert row[2].startswith(f"On “{row[0]} "), row
        assert row[3:] == ["succeeded", ""], row
    # The rows intake read as text keep their bytes.
    assert 'r1,The 27" monitor is great,' in text and 'r4,A 15" laptop and a 13" one,' in text


def test_exportresults_gives_the_csv_with_answers_too(owner_client, workspace, user, frozen_now):
    from tests.test_pages_downloads import export

    batch = answered(workspace, user, frozen_now, "{review}")
    page = owner_client.get(f"{batch.get_absolute_url()}download/answers.csv")
    assert export(batch.api_id, "--format", "answers") == b"".join(page.streaming_content)
