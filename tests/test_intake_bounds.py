"""The bounds a line is held to before anything walks it or computes with it (batches.intake.
bounds): the three lines a security review found crashing the check (990 levels of nesting in
a tool, deep nesting ending in a NUL, max_tokens of 10**23 with no model list) are each a
problem of their own line, with the field and the fix, through `validatebatch` and through the
background check, and the lines after them are still checked; and whatever else raises on a
line is that line's problem, not the file's."""

import json
import math
from decimal import Decimal

import pytest
from django.core.management import call_command

from batches.intake import bounds, command_line, line_checking
from batches.intake.bounds import MAX_DEPTH, MAX_INTEGER, deeper_than, depth
from batches.intake.problems import FIX_NESTING
from batches.intake.rules import bounded_validator
from batches.intake.templating import CsvOptions
from batches.models import Submission
from tests.test_intake import REVIEWS, check, good
from tests.test_intake_commands import validatebatch
from tests.test_submit_once import upload


def nested(levels: int, leaf: str) -> str:
    return "[" * levels + leaf + "]" * levels


def tool_line(custom_id: str, levels: int) -> str:
    """A request with a tool whose input schema holds a list nested `levels` deep."""
    tool = {"name": "lookup", "input_schema": {"type": "object", "x": "HERE"}}
    return good(custom_id, tools=[tool]).replace('"HERE"', nested(levels, "1"))


TOOLS_990 = tool_line("deep-tools", 990)
# The metadata's user_id: 990 lists around a NUL, which the NUL search used to recurse into.
NUL_DEEP = good("deep-nul", metadata={"user_id": "HERE"}).replace(
    '"HERE"', nested(990, '"\\u0000"')
)
HUGE_MAX_TOKENS = good("huge").replace('"max_tokens": 100', '"max_tokens": 1' + "0" * 23)
LATER_BAD = good("later", stream=True)

# (line, field, message) of each bad line of CRASHERS, and the line after each, which is good.
CRASHERS = "\n".join(
    [TOOLS_990, good("ok-1"), NUL_DEEP, good("ok-2"), HUGE_MAX_TOKENS, good("ok-3"), LATER_BAD]
)
EXPECTED = [
    (
        1,
        "params.tools[0].input_schema.x[0][0][0]…",
        "params.tools[0].input_schema.x[0][0][0]… is nested too deeply: 995 levels of lists and "
        "objects, at most 64.",
    ),
    (
        3,
        "params.metadata.user_id[0][0][0][0][0]…",
        "params.metadata.user_id[0][0][0][0][0]… is nested too deeply: 993 levels of lists and "
        "objects, at most 64.",
    ),
    (
        5,
        "params.max_tokens",
        "max_tokens is 1e+23, more than the largest integer the API takes "
        "(9,223,372,036,854,775,807).",
    ),
    (7, "params.stream", "Batches do not stream: stream must not be true."),
]


def test_the_three_lines_that_crashed_the_check_are_problems_of_their_lines(tmp_path):
    report = check(tmp_path, CRASHERS, models=None)
    assert [(p.line, p.field, p.message) for p in report.problems] == EXPECTED
    assert report.problems[0].fix == FIX_NESTING
    assert "much smaller number" in report.problems[2].fix
    assert report.request_count == 3 and report.complete
    assert report.estimate["max_output_tokens"] == 300


def test_validatebatch_names_each_of_them_and_exits_1_without_a_traceback(tmp_path):
    path = tmp_path / "crashers.jsonl"
    path.write_text(CRASHERS)
    result = validatebatch(path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and not result.stderr
    for line, field, message in EXPECTED:
        assert f"crashers.jsonl: line {line} [{field}]: {message} Fix: " in result.stdout
    assert "3 requests, 4 problems." in result.stdout


def test_validatebatch_through_django_names_them_alike(tmp_path, capsys):
    path = tmp_path / "crashers.jsonl"
    path.write_text(CRASHERS)
    with pytest.raises(SystemExit) as exited:
        call_command("validatebatch", str(path))
    assert exited.value.code == 1
    out = capsys.readouterr().out
    for line, field, message in EXPECTED:
        assert f"line {line} [{field}]: {message}" in out
    assert "3 requests, 4 problems." in out


@pytest.mark.django_db
def test_the_background_check_names_them_and_keeps_the_good_lines(workspace, user):
    assert not workspace.models_available  # no model list: max_tokens is not checked by model
    submission = upload(workspace, user, name="crashers.jsonl", content=CRASHERS.encode())
    assert submission.state == Submission.State.HAS_PROBLEMS
    assert submission.check_attempts == 1 and submission.check_complete
    found = [(p["line"], p["field"], p["message"]) for p in submission.problems]
    assert found == EXPECTED
    assert submission.request_count == 3 and submission.problem_count == 4
    # Try first reads what the check kept: the good lines, each with what trying it could cost.
    first = submission.first_requests
    assert [(item["custom_id"], item["line"]) for item in first] == [
        ("ok-1", 2),
        ("ok-2", 4),
        ("ok-3", 6),
    ]
    assert all(Decimal(item["cost_at_most"]) > 0 for item in first)


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (
            good("a").replace('"Hello"', nested(2000, "1")),
            "params.messages[0].content[0][0][0][0]…",
            "is nested too deeply: more than 1,024 levels",
        ),
        (good("a", max_tokens=2048.0), "params.max_tokens", "a number with a decimal point"),
        (
            good("a", thinking={"type": "enabled", "budget_tokens": 1e23}),
            "params.thinking.budget_tokens",
            "more than the largest integer the API takes",
        ),
        (good("a", top_k=2**64 - 1), "params.top_k", "more than the largest integer"),
        (good("a", metadata={"user_id": "u" * 600}), "params.metadata.user_id", "longer than 512"),
        (good("a", temperature=1e300), "params.temperature", "greater than the maximum of 1"),
    ],
)
def test_each_bound_is_a_problem_of_its_line_naming_the_field(tmp_path, line, field, words):
    report = check(tmp_path, line + "\n" + good("b"), models=None)
    assert report.request_count == 1
    assert [p.line for p in report.problems] == [1]
    assert report.problems[0].field == field
    assert words in report.problems[0].message, report.problems[0]


def test_a_line_as_deep_as_the_bound_is_fine_and_one_deeper_is_not(tmp_path):
    # The tool's input schema is at level 5 (line, params, tools, the tool, input_schema): its
    # value `x` adds the levels of the list it holds.
    at_bound = tool_line("at", MAX_DEPTH - 5)
    past_bound = tool_line("past", MAX_DEPTH - 4)
    assert depth(json.loads(at_bound)) == MAX_DEPTH
    report = check(tmp_path, at_bound + "\n" + past_bound, models=None)
    assert report.request_count == 1
    assert [p.line for p in report.problems] == [2]
    assert "65 levels" in report.problems[0].message


@pytest.mark.parametrize("levels", [0, 1, 2, 63, 64, 65, 66, 900])
def test_deeper_than_agrees_with_a_count_of_the_levels(levels):
    lists: object = 1
    objects: object = {}
    for level in range(levels):
        lists = [lists] if level % 3 else [1, "x", lists, None]
        objects = {"a": objects, "b": [1, 2]}
    for value in (lists, objects):
        expected = 0
        stack = [(value, 1)]
        while stack:  # the plain way: one step per value
            node, level = stack.pop()
            if isinstance(node, (dict, list)):
                expected = max(expected, level)
                children = node.values() if isinstance(node, dict) else node
                stack.extend((child, level + 1) for child in children)
        assert depth(value) == expected
        assert deeper_than(value, MAX_DEPTH) == (expected > MAX_DEPTH)


def test_the_fix_for_nesting_states_the_bound():
    assert f"at most {MAX_DEPTH} levels" in FIX_NESTING


def test_every_integer_of_the_schema_is_bounded_and_the_published_one_is_left_as_it_was():
    from foundations.schemas import openapi_document

    published = openapi_document()["components"]
    bounded = bounds.bounded_components(published)
    budget = bounded["schemas"]["ThinkingConfigEnabled"]["properties"]["budget_tokens"]
    assert budget == {**budget, "minimum": 1024, "maximum": MAX_INTEGER}
    assert (
        "maximum"
        not in published["schemas"]["ThinkingConfigEnabled"]["properties"]["budget_tokens"]
    )
    item = json.loads(good("a", top_k=MAX_INTEGER))
    assert bounded_validator().is_valid(item)
    item["params"]["top_k"] = MAX_INTEGER + 1
    assert not bounded_validator().is_valid(item)


def test_csv_options_no_row_could_use_are_one_problem_of_the_file(tmp_path):
    content = "review_id,review\nr1,fine\nr2,also fine\n"
    for options, field in (
        (CsvOptions(**{**REVIEWS.as_dict(), "max_tokens": 10**30}), "max_tokens"),
        (CsvOptions(**{**REVIEWS.as_dict(), "temperature": math.nan}), "temperature"),
    ):
        report = check(tmp_path, content, "csv", csv_options=options)
        assert [(p.line, p.field) for p in report.problems] == [(None, field)]
        assert report.request_count == 0


def test_whatever_else_raises_on_a_line_is_that_lines_problem(tmp_path, monkeypatch):
    real = line_checking.request_tokens

    def request_tokens(params):
        if params.get("system") == "boom":
            raise ZeroDivisionError("division by zero")
        return real(params)

    monkeypatch.setattr(line_checking, "request_tokens", request_tokens)
    content = "\n".join([good("a", system="x"), good("b", system="boom"), good("c", system="y")])
    report = check(tmp_path, content, models=None)
    assert [(p.line, p.message) for p in report.problems] == [
        (2, "Line 2 could not be checked: ZeroDivisionError: division by zero; please report this.")
    ]
    assert report.request_count == 2 and report.complete
    assert report.estimate["models"][0]["requests"] == 2


def test_whatever_else_raises_on_a_csv_row_is_that_rows_problem(tmp_path, monkeypatch):
    real = CsvOptions.render

    def render(self, row):
        if row.get("review") == "boom":
            raise KeyError("boom")
        return real(self, row)

    monkeypatch.setattr(CsvOptions, "render", render)
    content = "review_id,review\nr1,fine\nr2,boom\nr3,also fine\n"
    report = check(tmp_path, content, "csv", csv_options=REVIEWS)
    assert [(p.line, p.message) for p in report.problems] == [
        (3, "Line 3 could not be checked: KeyError: 'boom'; please report this.")
    ]
    assert report.request_count == 2


def test_validatebatch_says_a_failure_outside_the_lines_in_a_sentence(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "requests.jsonl"
    path.write_text(good("a"))

    def broken(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(command_line, "check_file", broken)
    with pytest.raises(SystemExit) as exited:
        command_line.main([str(path)])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "CommandError: The file could not be checked (MemoryError: no room); please report this.\n"
    )
