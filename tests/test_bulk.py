"""Bulk writes keep every value exactly, whatever it holds, and upsert instead of duplicating."""

import orjson
import pytest

from batches import bulk
from batches.ingestion import ROW_FIELDS, UPDATE_FIELDS, _row
from batches.models import Result
from tests import factories

pytestmark = pytest.mark.django_db
HOSTILE = [
    "tab\there",
    "line\nbreak\r\nand return\r",
    "back\\slash \\N \\t \\\\",
    '"quoted", with, commas',
    "\\.",
    "émoji 🎉 and \u2028 separators",
    "",
]


def test_upserted_rows_keep_every_character_and_replace_what_was_there(workspace):
    batch = factories.batch(workspace)
    rows = [
        _row(batch.pk, {"custom_id": f"req-{n}", "result_type": "succeeded", "answer_text": text,
                        "content": [{"type": "text", "text": text}], "error_message": text})
        for n, text in enumerate(HOSTILE)
    ]  # fmt: skip
    bulk.upsert_rows(Result, ROW_FIELDS, rows, unique=["batch", "custom_id"], update=UPDATE_FIELDS)
    stored = {r.custom_id: r for r in Result.objects.filter(batch=batch)}
    for n, text in enumerate(HOSTILE):
        assert stored[f"req-{n}"].answer_text == text
        assert stored[f"req-{n}"].error_message == text
        assert stored[f"req-{n}"].content == [{"type": "text", "text": text}]
    again = [_row(batch.pk, {"custom_id": "req-0", "result_type": "errored",
                             "error_type": "overloaded_error"})]  # fmt: skip
    bulk.upsert_rows(Result, ROW_FIELDS, again, unique=["batch", "custom_id"], update=UPDATE_FIELDS)
    assert Result.objects.filter(batch=batch).count() == len(HOSTILE)
    replaced = Result.objects.get(batch=batch, custom_id="req-0")
    assert replaced.result_type == "errored" and replaced.answer_text == ""
    assert replaced.content is None


def test_content_goes_in_as_json_text():
    row = _row(1, {"custom_id": "a", "result_type": "succeeded", "content": [{"text": "x"}]})
    assert orjson.loads(row[ROW_FIELDS.index("content")]) == [{"text": "x"}]
