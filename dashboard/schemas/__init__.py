"""The public OpenAPI description of the Message Batches API (`anthropic-openapi-batches.json`),
and validators compiled from it once per process.

Both the upload checks (batches.intake) and the emulator read the API's rules from here, so the
two never disagree about what a valid request is.
"""

import functools
import json
import re
from pathlib import Path

import jsonschema_rs

DOCUMENT = Path(__file__).with_name("anthropic-openapi-batches.json")
# The API's rule for `custom_id`, which the schema also states as a pattern. \A and \Z, not ^ and
# $: in Python `$` also matches before a final newline, so "r1\n" would pass.
CUSTOM_ID_PATTERN = re.compile(r"\A[a-zA-Z0-9_-]{1,64}\Z")


def is_custom_id(value: str) -> bool:
    return CUSTOM_ID_PATTERN.match(value) is not None


@functools.cache
def openapi_document() -> dict:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


@functools.cache
def validator(schema_name: str) -> jsonschema_rs.Validator:
    """A compiled validator for one schema of the document (`#/components/schemas/NAME`)."""
    wrapper = {
        "$ref": f"#/components/schemas/{schema_name}",
        "components": openapi_document()["components"],
    }
    return jsonschema_rs.validator_for(wrapper, validate_formats=False)
