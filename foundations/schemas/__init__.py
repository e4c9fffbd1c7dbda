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
# "There is a limit of 100,000 messages in a single request" (the description of `messages`).
MAX_MESSAGES = 100_000


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


def rule_problems(params: dict) -> list[tuple[str, str, str]]:
    """What the API refuses in a request that its published schema lets through (the rules its
    descriptions state in words), as (field, what is wrong, how to fix it): a thinking budget not
    below max_tokens, a tool_choice naming no defined tool, a web search tool with both allowed
    and blocked domains, more than MAX_MESSAGES messages, and an empty message (allowed only as
    the final assistant one, a prefill).
    Shared by the file check and the emulator, so neither accepts what the API refuses."""
    problems: list[tuple[str, str, str]] = []
    max_tokens = params.get("max_tokens")
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and isinstance(max_tokens, int) and budget >= max_tokens:
            problems.append((
                "params.thinking.budget_tokens",
                f"max_tokens ({max_tokens:,}) must be greater than thinking.budget_tokens "
                f"({budget:,}).",
                "Raise max_tokens above the thinking budget, or lower budget_tokens.",
            ))  # fmt: skip
    choice = params.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        given = params.get("tools")
        tools: list = given if isinstance(given, list) else []
        names = [tool.get("name") for tool in tools if isinstance(tool, dict)]
        if not names:
            problems.append((
                "params.tool_choice",
                f"tool_choice is {choice['type']!r}, but no tools are defined.",
                "Add the tools to params.tools, or remove tool_choice.",
            ))  # fmt: skip
        elif choice.get("type") == "tool" and choice.get("name") not in names:
            problems.append((
                "params.tool_choice.name",
                f"tool_choice names the tool {str(choice.get('name'))[:64]!r}, which is not "
                "among the tools.",
                "Use one of: " + ", ".join(str(name)[:64] for name in names[:5]) + ".",
            ))  # fmt: skip
    given_tools = params.get("tools")
    for index, tool in enumerate(given_tools if isinstance(given_tools, list) else []):
        if (
            isinstance(tool, dict)
            and str(tool.get("type", "")).startswith("web_search_")
            and tool.get("allowed_domains") is not None
            and tool.get("blocked_domains") is not None
        ):
            problems.append((
                f"params.tools[{index}]",
                "The web search tool has both allowed_domains and blocked_domains; it takes one "
                "or the other.",
                "Keep only allowed_domains or only blocked_domains.",
            ))  # fmt: skip
    listed = params.get("messages")
    messages: list = listed if isinstance(listed, list) else []
    if len(messages) > MAX_MESSAGES:
        problems.append((
            "params.messages",
            f"The request has {len(messages):,} messages; the API takes at most "
            f"{MAX_MESSAGES:,} in one request.",
            "Shorten the conversation.",
        ))  # fmt: skip
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        if index == len(messages) - 1 and message.get("role") == "assistant":
            continue  # an empty prefill is allowed
        # (An empty text block is refused by the schema itself: minLength 1.)
        if message.get("content") == "":
            problems.append((
                f"params.messages[{index}].content",
                f"Message {index + 1} has empty text: every message but a final assistant one "
                "needs text that is not empty.",
                "Write the text, or remove the empty block.",
            ))  # fmt: skip
    return problems


def may_break_rules(params: dict) -> bool:
    """Whether a request is worth `rule_problems`: only one with thinking, a tool_choice, tools,
    more than MAX_MESSAGES messages or a message whose content is an empty string can break them.
    Runs for every request of a file, after the schema check: a look at the top-level keys and at
    each message's content, not a scan of the line (a search of every byte costs as much as
    parsing it)."""
    if "thinking" in params or "tool_choice" in params or "tools" in params:
        return True
    messages = params.get("messages")
    if type(messages) is list:
        if len(messages) > MAX_MESSAGES:
            return True
        for message in messages:
            if type(message) is dict and message.get("content") == "":
                return True
    return False
