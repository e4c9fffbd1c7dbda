"""The API's answers are checked before anything reads them (batches.answers)."""

import copy
from typing import Any

import pytest

from batches import answers

BATCH = {
    "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message_batch",
    "processing_status": "in_progress",
    "request_counts": {"processing": 10, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "created_at": "2026-12-01T10:00:00.123456Z",
    "expires_at": "2026-12-02T10:00:00Z",
    "ended_at": None,
    "cancel_initiated_at": None,
    "archived_at": None,
    "results_url": None,
}


def changed(path: str, value):
    batch = copy.deepcopy(BATCH)
    *parents, last = path.split(".")
    target: dict[str, Any] = batch
    for name in parents:
        target = target[name]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return batch


def test_it_takes_a_batch_as_the_api_gives_it():
    assert answers.batch(copy.deepcopy(BATCH)) == BATCH
    page = {"data": [BATCH], "has_more": False, "first_id": BATCH["id"], "last_id": BATCH["id"]}
    assert answers.batch_list(page) == page


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"hello": "world"}, "is not a message batch"),
        ([], "is not a message batch"),
        (changed("id", KeyError), '"id" is a required property'),
        (changed("processing_status", "paused"), "processing_status"),
        (changed("request_counts.succeeded", 10**23), "request_counts.succeeded is not a count"),
        (changed("request_counts.errored", -1), "request_counts.errored is not a count"),
        (changed("request_counts.expired", 1.5), "request_counts.expired"),
        (changed("created_at", "yesterday"), "created_at is not a date and time"),
        (changed("ended_at", "2026-13-45T99:00:00Z"), "ended_at is not a date and time"),
        (changed("id", "x" * 101), "not an id of 1 to 100 printable characters"),
        (changed("id", "msgbatch_\u0000"), "not an id of 1 to 100 printable characters"),
        (changed("results_url", "https://x/" + "a" * 600), "results_url is longer than 500"),
    ],
)
def test_it_names_what_is_wrong_with_a_batch(batch, message):
    with pytest.raises(answers.AnswerError, match=message):
        answers.batch(batch)


def test_a_page_of_batches_is_checked_item_by_item():
    page = {
        "data": [changed("created_at", 5)],
        "has_more": False,
        "first_id": None,
        "last_id": None,
    }
    with pytest.raises(answers.AnswerError, match="created_at"):
        answers.batch_list(page)
    with pytest.raises(answers.AnswerError, match="not a page of batches"):
        answers.batch_list({"data": "all of them"})


def test_a_model_list_needs_only_what_the_dashboard_reads():
    assert answers.model_list({"data": [{"id": "claude-haiku-4-5"}], "has_more": False})
    for body, message in [
        ({"models": []}, "no data list"),
        ({"data": [5]}, "data.0 is not a model"),
        ({"data": [{"id": ""}]}, "data.0.id is not an id"),
        ({"data": [{"id": "m", "display_name": ["x"]}]}, "display_name"),
        ({"data": [], "last_id": 7}, "last_id"),
    ]:
        with pytest.raises(answers.AnswerError, match=message):
            answers.model_list(body)
