"""The API's answers checked before anything reads them.

A workspace's base URL is chosen by a person, so the server behind it may answer anything: JSON
of another shape, numbers too large for a column, a date that is not one, a megabyte of id. Each
answer the dashboard keeps is checked here against the published schema (the OpenAPI document
in `foundations/schemas`) and against what the database can hold, and a wrong one becomes an
`AnswerError` that names the field, never a KeyError or a database error deep in a sync or a
page.
"""

from typing import Any

from django.utils.dateparse import parse_datetime

from foundations.schemas import validator

# The columns the answers go to: Batch.api_id (100), Batch.results_url (500), PositiveIntegerField.
MAX_ID_CHARS = 100
MAX_URL_CHARS = 500
MAX_COUNT = 2**31 - 1
TIMES = ("created_at", "expires_at", "ended_at", "cancel_initiated_at", "archived_at")
COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


class AnswerError(ValueError):
    """An answer of a shape the dashboard cannot read; the message names what is wrong."""


def _schema_problem(body: Any, schema: str) -> str:
    for error in validator(schema).iter_errors(body):
        where = ".".join(str(part) for part in error.instance_path) or "the answer"
        return f"{where}: {error.message[:200]}"
    return ""


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or not value.isprintable():
        raise AnswerError(f"{what} is not an id of 1 to {MAX_ID_CHARS} printable characters.")
    return value


def batch(body: Any) -> dict:
    """A MessageBatch object, as the mirror stores it."""
    problem = _schema_problem(body, "MessageBatch")
    if problem:
        raise AnswerError(f"The answer is not a message batch ({problem}).")
    _identifier(body["id"], "The batch's id")
    for name in COUNTS:
        value = body["request_counts"].get(name, 0)
        if not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise AnswerError(f"request_counts.{name} is not a count from 0 to {MAX_COUNT:,}.")
    for name in TIMES:
        value = body.get(name)
        try:
            if value is not None and parse_datetime(value) is None:
                raise ValueError
        except (TypeError, ValueError):
            raise AnswerError(f"{name} is not a date and time.") from None
    url = body.get("results_url")
    if url is not None and len(url) > MAX_URL_CHARS:
        raise AnswerError(f"results_url is longer than {MAX_URL_CHARS} characters.")
    return body


def batch_list(body: Any) -> dict:
    """A page of the batch list: each batch checked as `batch` checks one."""
    problem = _schema_problem(body, "ListResponse_MessageBatch_")
    if problem:
        raise AnswerError(f"The answer is not a page of batches ({problem}).")
    for item in body["data"]:
        batch(item)
    return body


def deleted(body: Any) -> dict:
    problem = _schema_problem(body, "DeleteMessageBatchResponse")
    if problem:
        raise AnswerError(f"The answer is not a deleted batch ({problem}).")
    return body


def model_list(body: Any) -> dict:
    """A page of the model list. Only what the dashboard reads is required (an id each, a
    display name if any): older and newer APIs differ in the rest."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise AnswerError("The answer is not a list of models (no data list).")
    for index, item in enumerate(body["data"]):
        if not isinstance(item, dict):
            raise AnswerError(f"data.{index} is not a model.")
        _identifier(item.get("id"), f"data.{index}.id")
        name = item.get("display_name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise AnswerError(f"data.{index}.display_name is not a name of at most 200 characters.")
    last_id = body.get("last_id")
    if last_id is not None and not isinstance(last_id, str):
        raise AnswerError("last_id is not an id.")
    return body
