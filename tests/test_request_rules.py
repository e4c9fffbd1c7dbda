"""What the API refuses although its schema lets it through: the file check and the emulator
both refuse it, with the line, the field and the fix (and the emulator as the API words it)."""

import json

import pytest

from batches.intake.checking import check_file
from batches.intake.command_line import local_ranges
from emulator.validation import check_params

BASE = {"model": "claude-sonnet-4-5", "max_tokens": 2000,
        "messages": [{"role": "user", "content": "Hello"}]}  # fmt: skip
WEATHER = {"name": "weather", "description": "d", "input_schema": {"type": "object"}}
SEARCH = {"type": "web_search_20250305", "name": "web_search"}

REFUSED = {
    "thinking budget at max_tokens": (
        {**BASE, "thinking": {"type": "enabled", "budget_tokens": 2000}},
        "params.thinking.budget_tokens",
        "must be greater than thinking.budget_tokens",
    ),
    "tool_choice naming no tool": (
        {**BASE, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "stocks"}},
        "params.tool_choice.name",
        "not among the tools",
    ),
    "tool_choice without tools": (
        {**BASE, "tool_choice": {"type": "any"}},
        "params.tool_choice",
        "no tools are defined",
    ),
    "an empty user message": (
        {**BASE, "messages": [{"role": "user", "content": ""}]},
        "params.messages[0].content",
        "empty text",
    ),
    "a web search with allowed and blocked domains": (
        {
            **BASE,
            "tools": [
                WEATHER,
                {**SEARCH, "allowed_domains": ["a.org"], "blocked_domains": ["b.org"]},
            ],
        },
        "params.tools[1]",
        "both allowed_domains and blocked_domains",
    ),
    "more than 100,000 messages": (
        {**BASE, "messages": [{"role": "user", "content": "x"}] * 100_001},
        "params.messages",
        "the API takes at most 100,000 in one request",
    ),
}
ACCEPTED = {
    "a thinking budget below max_tokens": {
        **BASE, "thinking": {"type": "enabled", "budget_tokens": 1024}
    },
    "tool_choice naming a tool": {
        **BASE, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "weather"}
    },
    "a web search with allowed domains only": {
        **BASE, "tools": [{**SEARCH, "allowed_domains": ["a.org"]}]
    },
    "100,000 messages": {**BASE, "messages": [{"role": "user", "content": "x"}] * 100_000},
    "an empty assistant prefill at the end": {
        **BASE,
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}],
    },
}  # fmt: skip


def _check(tmp_path, params_list):
    path = tmp_path / "requests.jsonl"
    lines = [json.dumps({"custom_id": f"r{n}", "params": p}) for n, p in enumerate(params_list)]
    path.write_text("\n".join(lines) + "\n")
    return check_file(local_ranges(path), path.stat().st_size, "jsonl", models=None).report


@pytest.mark.parametrize("case", REFUSED)
def test_the_check_and_the_emulator_refuse_it(tmp_path, case):
    params, field, words = REFUSED[case]
    report = _check(tmp_path, [BASE, params])
    assert report.request_count == 1 and report.problem_count == 1
    [problem] = report.problems
    assert (problem.line, problem.field) == (2, field) and words in problem.message
    assert problem.fix
    answer = check_params(params) or ""
    assert words in answer
    assert answer.startswith(field.removeprefix("params.").replace("[", ".").replace("]", ""))


def test_an_empty_text_block_is_refused_by_the_schema_in_both(tmp_path):
    params = {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}
    report = _check(tmp_path, [params])
    assert report.request_count == 0
    assert report.problems[0].field == "params.messages[0].content[0].text"
    assert report.problems[0].message == '"" is shorter than 1 character'
    assert check_params(params) == 'messages.0.content.0.text: "" is shorter than 1 character'


@pytest.mark.parametrize("case", ACCEPTED)
def test_what_the_api_takes_passes_both(tmp_path, case):
    report = _check(tmp_path, [ACCEPTED[case]])
    assert report.ok, report.problems
    assert check_params(ACCEPTED[case]) is None
