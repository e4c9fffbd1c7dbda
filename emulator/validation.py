"""Checks on what clients send, with messages that name the field as the API's do.

Two moments, as in the API: a create call is refused (400) only for the batch's own shape (the
list of requests, each `custom_id`, `params` being an object); each request's `params` is checked
against the Messages API later, and a bad one ends `errored` with the message `check_params` gives.
"""

import json
import math
import re
from collections.abc import Iterable
from typing import NoReturn

from emulator import catalog
from foundations.betas import output_limit
from foundations.schemas import is_custom_id, rule_problems, validator

MAX_REQUESTS = 100_000


class InvalidBatch(Exception):
    """The create body breaks the batch's own rules: a 400 whose message names the field."""


def _refuse_constant(name: str) -> NoReturn:
    # Python's json reads NaN and Infinity; JSON, and so the API, does not.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is too large for a JSON number")
    return value


def _loads(raw: bytes) -> object:
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidBatch(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidBatch("Request body is nested too deeply to be read.") from None


def parse_message_body(raw: bytes) -> dict:
    """The params of a `POST /v1/messages` body, or `InvalidBatch` saying why not (the params
    themselves are checked by `check_params`, as a batch's requests are)."""
    body = _loads(raw)
    if not isinstance(body, dict):
        raise InvalidBatch("Input should be a valid dictionary")
    return body


def parse_create_body(raw: bytes) -> list:
    """The `requests` of a create body, or `InvalidBatch` naming the first problem."""
    body = _loads(raw)
    if not isinstance(body, dict):
        raise InvalidBatch("Request body must be a JSON object with a `requests` list.")
    extra = sorted(set(body) - {"requests"})
    if extra:
        raise InvalidBatch(f"{extra[0]}: Extra inputs are not permitted")
    requests = body.get("requests")
    if requests is None:
        raise InvalidBatch("requests: Field required")
    if not isinstance(requests, list):
        raise InvalidBatch("requests: Input should be a valid list")
    if not requests:
        raise InvalidBatch("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > MAX_REQUESTS:
        raise InvalidBatch(
            f"requests: List should have at most {MAX_REQUESTS} items after validation, "
            f"not {len(requests)}"
        )
    first_use: dict[str, int] = {}
    for index, item in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(item, dict):
            raise InvalidBatch(f"{where}: Input should be a valid dictionary")
        extra = sorted(set(item) - {"custom_id", "params"})
        if extra:
            raise InvalidBatch(f"{where}.{extra[0]}: Extra inputs are not permitted")
        for field in ("custom_id", "params"):
            if field not in item:
                raise InvalidBatch(f"{where}.{field}: Field required")
        custom_id = item["custom_id"]
        if not isinstance(custom_id, str):
            raise InvalidBatch(f"{where}.custom_id: Input should be a valid string")
        if not is_custom_id(custom_id):
            raise InvalidBatch(
                f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if custom_id in first_use:
            raise InvalidBatch(
                f"{where}.custom_id: Duplicate custom_id '{custom_id}' "
                f"(first used by requests.{first_use[custom_id]}); custom_id must be unique "
                "within a batch"
            )
        first_use[custom_id] = index
        if not isinstance(item["params"], dict):
            raise InvalidBatch(f"{where}.params: Input should be a valid dictionary")
    return requests


_TYPE_NAMES = {
    "integer": "a valid integer",
    "string": "a valid string",
    "number": "a valid number",
    "boolean": "a valid boolean",
    "array": "a valid list",
    "object": "a valid dictionary",
    "null": "null",
}


def _dotted(pointer: str) -> str:
    return ".".join(part for part in pointer.split("/") if part) or "params"


def _pydantic_style(location: str, message: str) -> str:
    """jsonschema's wording turned into the API's (`max_tokens: Field required`)."""
    if match := re.fullmatch(r'"(.+)" is a required property', message):
        field = match.group(1)
        return (
            f"{location}.{field}: Field required"
            if location != "params"
            else (f"{field}: Field required")
        )
    if match := re.match(r"Additional properties are not allowed \('(.+?)' was", message):
        field = match.group(1)
        prefix = "" if location == "params" else f"{location}."
        return f"{prefix}{field}: Extra inputs are not permitted"
    if match := re.search(r'is not of type "(\w+)"', message):
        return f"{location}: Input should be {_TYPE_NAMES.get(match.group(1), match.group(1))}"
    if match := re.fullmatch(r"(.+) was expected", message):
        return f"{location}: Input should be {match.group(1)}"
    return f"{location}: {message}"


def _schema_error(params: dict) -> str | None:
    """The most precise schema error in `params`, or None.

    Unions of content blocks report a failure for every branch; the branches whose `type` (the
    discriminator) does not match are noise, so the deepest error of a matching branch is kept.
    """
    checker = validator("CreateMessageParams")
    try:
        if checker.is_valid(params):
            return None
        errors = checker.evaluate(params).errors()
    except ValueError:  # the validator's own recursion limit, on absurdly nested input
        return "params: Input is nested too deeply"
    mismatched = {
        error["schemaLocation"].split("/properties/")[0]
        for error in errors
        if error["schemaLocation"].endswith(("/properties/type/const", "/properties/role/enum"))
    }
    relevant = [
        error
        for error in errors
        if error["schemaLocation"].split("/properties/")[0] not in mismatched
        and not re.search(r"/anyOf/\d+/type$", error["schemaLocation"])
    ]
    chosen = max(
        relevant or errors, key=lambda error: error["instanceLocation"].count("/"), default=None
    )
    if chosen is None:
        return "params: Invalid request"
    return _pydantic_style(_dotted(chosen["instanceLocation"]), chosen["error"])


def check_params(
    params: dict, betas: Iterable[str] | None = (), *, in_batch: bool = True
) -> str | None:
    """Why the Messages API would refuse `params` (sent with these beta features, in a batch or
    on their own), or None if it would answer it."""
    problem = _schema_error(params)
    if problem:
        return problem
    if params.get("stream"):
        if not in_batch:  # the API would stream; the emulator answers in one piece only
            return "stream: The emulator does not stream; leave stream out or set it to false"
        return "stream: Streaming is not supported in the Message Batches API"
    if not params["messages"]:
        return "messages: at least one message is required"
    for field, message, _ in rule_problems(params):
        return f"{_dotted_field(field.removeprefix('params.'))}: {message}"
    spec = catalog.find(params["model"])
    if spec is None:
        return f"model: {params['model']} is not a valid model"
    limit = output_limit(spec.id, spec.max_tokens, betas) or spec.max_tokens
    if params["max_tokens"] > limit:
        return (
            f"max_tokens: {params['max_tokens']} > {limit}, which is the maximum "
            f"allowed number of output tokens for {catalog.resolved_id(spec.id)}"
        )
    return None


def _dotted_field(field: str) -> str:
    """messages[0].content as the API words it: messages.0.content."""
    return re.sub(r"\[(\d+)\]", r".\1", field)
