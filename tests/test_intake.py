"""The validator on good files and on at least thirty kinds of bad ones."""

import gzip
import json
from pathlib import Path

import pytest

from batches import intake
from emulator.catalog import MODELS

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
WORKSPACE_MODELS = [{"id": m.id, "max_tokens": m.max_tokens} for m in MODELS]
REVIEWS = intake.CsvOptions(
    template="Classify as positive, negative or neutral (one word): {review}",
    model="claude-haiku-4-5",
    max_tokens=16,
    id_column="review_id",
)


def good(custom_id="q1", **params):
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello"}],
        **params,
    }
    return json.dumps({"custom_id": custom_id, "params": body})


def check(tmp_path, content, fmt="jsonl", name=None, **kwargs):
    path = tmp_path / (name or f"upload.{fmt}")
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    kwargs.setdefault("models", WORKSPACE_MODELS)
    return intake.validate_file(path, fmt, **kwargs)


@pytest.mark.parametrize("sample", ["questions.jsonl", "mixed-requests.jsonl"])
def test_it_accepts_the_sample_jsonl_files(sample):
    report = intake.validate_file(SAMPLES / sample, "jsonl", models=WORKSPACE_MODELS)
    assert report.ok, report.problems
    lines = (SAMPLES / sample).read_text().splitlines()
    assert report.request_count == sum(1 for line in lines if line.strip())


def test_it_accepts_the_sample_csv_with_a_template():
    report = intake.validate_file(
        SAMPLES / "reviews.csv", "csv", models=WORKSPACE_MODELS, csv_options=REVIEWS
    )
    assert report.ok, report.problems
    assert report.request_count == 5
    last = report.preview[4]
    assert last["custom_id"] == "r5"
    assert last["params"]["messages"][0]["content"].endswith("Ça marche très bien — merci !")
    assert '"really"' in report.preview[3]["params"]["messages"][0]["content"]


def test_it_accepts_a_bom_crlf_blank_lines_and_gzip(tmp_path):
    content = "\ufeff" + good("a") + "\r\n\r\n" + good("b") + "\r\n   \n"
    assert check(tmp_path, content).request_count == 2
    gz = gzip.compress(content.encode("utf-8"))
    report = check(tmp_path, gz, name="upload.jsonl.gz")
    assert report.ok and report.request_count == 2


def test_it_numbers_rows_when_there_is_no_id_column(tmp_path):
    options = intake.CsvOptions(template="Say {word}", model="claude-haiku-4-5", max_tokens=5)
    report = check(tmp_path, "word\nhi\nbye\n", "csv", csv_options=options)
    assert [item["custom_id"] for item in report.preview] == ["row-1", "row-2"]


def test_it_estimates_tokens_and_the_batch_price(tmp_path):
    report = check(tmp_path, good("a", max_tokens=1000) + "\n" + good("b", max_tokens=1000))
    estimate = report.estimate
    assert estimate["input_tokens"] > 0
    # 2,000 output tokens at most, at half of $15 per million.
    assert estimate["max_output_cost"] == "0.0150"
    assert estimate["models"][0]["model"] == "claude-sonnet-4-5"


BAD_JSONL = [
    ("empty file", "", None, "The file is empty."),
    ("only blank lines", "\n\n  \n", None, "The file holds no requests."),
    ("broken json", good() + '\n{"custom_id": "x", "params": {\n', 2, "Not valid JSON at column"),
    ("trailing comma", '{"custom_id": "a", "params": {},}', 1, "Not valid JSON at column"),
    ("single quotes", "{'custom_id': 'a'}", 1, "Not valid JSON at column 2"),
    ("json array line", "[1, 2]", 1, "is a JSON list, not an object"),
    ("json string line", '"hello"', 1, "is a JSON str, not an object"),
    ("not utf-8", b'{"custom_id": "caf\xe9"}', 1, "is not UTF-8 text (byte 0xe9"),
    (
        "missing custom_id",
        json.dumps({"params": json.loads(good())["params"]}),
        1,
        "custom_id is required.",
    ),
    ("missing params", json.dumps({"custom_id": "a"}), 1, "params is required."),
    (
        "extra top-level key",
        json.dumps({**json.loads(good()), "id": 1}),
        1,
        "id is not a field the API accepts",
    ),
    ("custom_id with spaces", good("has space"), 1, "is not 1 to 64 letters, digits, _ or -"),
    ("custom_id too long", good("x" * 65), 1, "is not 1 to 64 letters"),
    ("custom_id empty", good(""), 1, "is not 1 to 64 letters"),
    ("custom_id a number", json.dumps({**json.loads(good()), "custom_id": 7}), 1, "is not of type"),
    (
        "duplicate custom_id",
        good("a") + "\n" + good("b") + "\n" + good("a"),
        3,
        "was already used on line 1",
    ),
    ("missing model", good(model=None).replace('"model": null, ', ""), 1, "model is required."),
    (
        "missing max_tokens",
        json.dumps(
            {
                "custom_id": "a",
                "params": {
                    "model": "claude-sonnet-4-5",
                    "messages": [{"role": "user", "content": "x"}],
                },
            }
        ),
        1,
        "max_tokens is required.",
    ),
    ("max_tokens as string", good(max_tokens="100"), 1, '"100" is not of type "integer"'),
    (
        "max_tokens over the model limit",
        good(max_tokens=70000),
        1,
        "max_tokens 70,000 is more than claude-sonnet-4-5 allows (64,000)",
    ),
    (
        "unknown model",
        good(model="claude-sonnet-9"),
        1,
        "Model 'claude-sonnet-9' is not available in this workspace",
    ),
    ("empty messages", good(messages=[]), 1, "messages is empty."),
    ("stream true", good(stream=True), 1, "Batches do not stream"),
    ("bad role", good(messages=[{"role": "robot", "content": "x"}]), 1, '"robot" is not one of'),
    (
        "bad block type",
        good(messages=[{"role": "user", "content": [{"type": "txt", "text": "x"}]}]),
        1,
        "content[0] has type 'txt', which is not a content block type",
    ),
    (
        "content a number",
        good(messages=[{"role": "user", "content": 5}]),
        1,
        "content must be a string or a list",
    ),
    ("temperature too high", good(temperature=3), 1, "3 is greater than the maximum of 1"),
    ("unknown param", good(foo=1), 1, "foo is not a field the API accepts here"),
    ("messages not a list", good(messages="hi"), 1, 'is not of type "array"'),
    (
        "second line bad after a good one",
        good("a") + "\n" + good("b", max_tokens=0),
        2,
        "less than the minimum of 1",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "line", "message"), BAD_JSONL, ids=[c[0] for c in BAD_JSONL]
)
def test_it_explains_a_bad_jsonl_file(tmp_path, name, content, line, message):
    report = check(tmp_path, content)
    assert not report.ok
    matching = [p for p in report.problems if message in p.message]
    assert matching, [p.message for p in report.problems]
    assert matching[0].line == line
    assert matching[0].fix


BAD_CSV = [
    (
        "template column missing",
        "id,text\n1,hi\n",
        {"template": "Say {review}"},
        1,
        "The template uses {review} but the file has no column 'review'",
    ),
    (
        "id column missing",
        "review\nhi\n",
        {"template": "{review}", "id_column": "review_id"},
        1,
        "There is no column 'review_id'",
    ),
    (
        "ragged row",
        "review_id,review\nr1,good\nr2,bad,extra\n",
        {},
        3,
        "Row 2 has 3 fields but the header has 2",
    ),
    (
        "unclosed quote",
        'review_id,review\nr1,"never closed\nr2,fine\n',
        {},
        2,
        "cannot be read: unexpected end of data",
    ),
    ("stray quote", 'review_id,review\nr1,"ab"c\n', {}, 2, "',' expected after '\"'"),
    (
        "duplicate id",
        "review_id,review\nr1,good\nr1,bad\n",
        {},
        3,
        "custom_id 'r1' was already used on line 2",
    ),
    ("bad id", "review_id,review\nr 1,good\n", {}, 2, "is not 1 to 64 letters"),
    (
        "empty prompt",
        "review_id,review\nr1,\n",
        {"template": "{review}"},
        2,
        "Row 1 gives an empty prompt",
    ),
    ("latin-1 csv", "review_id,review\nr1,caf\xe9\n".encode("latin-1"), {}, 2, "is not UTF-8 text"),
    ("header only", "review_id,review\n", {}, None, "The file holds no requests."),
    (
        "bad template brace",
        "review_id,review\nr1,x\n",
        {"template": "Say {review"},
        None,
        "Placeholders are plain column names",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "overrides", "line", "message"), BAD_CSV, ids=[c[0] for c in BAD_CSV]
)
def test_it_explains_a_bad_csv_file(tmp_path, name, content, overrides, line, message):
    options = intake.CsvOptions(**{**REVIEWS.__dict__, **overrides})
    report = check(tmp_path, content, "csv", csv_options=options)
    assert not report.ok
    matching = [p for p in report.problems if message in p.message]
    assert matching, [p.message for p in report.problems]
    assert matching[0].line == line


def test_a_damaged_gzip_file_is_reported_not_crashed_on(tmp_path):
    data = gzip.compress(("".join(good(f"r{n}") + "\n" for n in range(400))).encode())
    report = check(tmp_path, data[: len(data) // 2], name="cut.jsonl.gz")
    assert any("compressed file is damaged" in p.message for p in report.problems)


def test_random_bytes_get_a_report_not_an_exception(tmp_path):
    import random

    noise = bytes(random.Random(7).randrange(256) for _ in range(20_000))
    report = check(tmp_path, noise)
    assert report.problem_count > 0


def test_it_keeps_the_first_hundred_problems_and_counts_all(tmp_path):
    import io

    out = io.StringIO()
    content = "\n".join(good(f"id {n}") for n in range(250))
    report = check(tmp_path, content, report_out=out)
    assert report.problem_count == 250 and len(report.problems) == 100
    assert len(out.getvalue().strip().splitlines()) == 251  # a header and every problem


def test_it_splits_a_file_over_the_request_limit(tmp_path, settings):
    lines = (good(f"r{n}") for n in range(100_001))
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines))
    report = intake.validate_file(path, "jsonl", models=WORKSPACE_MODELS)
    assert report.ok
    assert [part["requests"] for part in report.parts] == [100_000, 1]
    refused = intake.validate_file(path, "jsonl", models=WORKSPACE_MODELS, oversize="refuse")
    assert not refused.ok
    assert "one batch takes at most 100,000 requests" in refused.problems[0].message


def test_it_splits_by_size_too(tmp_path, settings):
    settings.MAX_BATCH_BYTES = 2000
    content = "\n".join(good(f"r{n}") for n in range(30))
    report = check(tmp_path, content)
    assert len(report.parts) > 1
    assert all(part["bytes"] <= 2000 for part in report.parts)
    assert sum(part["requests"] for part in report.parts) == 30


def test_without_a_model_list_models_are_not_checked_and_it_says_so(tmp_path):
    report = check(tmp_path, good(model="claude-anything"), models=None)
    assert report.ok
    assert "model names were not checked" in report.notes[0]


def test_deeply_nested_brackets_are_reported_not_crashed_on(tmp_path):
    report = check(tmp_path, "[" * 100_000 + "\n" + good("ok"))
    assert report.request_count == 1
    assert report.problems[0].line == 1
    assert "nested too deeply to read" in report.problems[0].message


def test_valid_but_absurdly_nested_json_is_reported_not_crashed_on(tmp_path):
    item = json.loads(good("deep"))
    node = item["params"]["metadata"] = {}
    for _ in range(900):  # still readable JSON, beyond the schema validator's recursion limit
        node["user_id"] = {}
        node = node["user_id"]
    report = check(tmp_path, json.dumps(item))
    assert [p.message for p in report.problems] == ["The request is nested too deeply to check."]


def test_an_endless_line_is_skipped_and_reported_without_holding_it(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_LINE_BYTES", 10_000)
    content = good("a") + "\n" + "x" * 50_000 + "\n" + good("b") + "\n"
    report = check(tmp_path, gzip.compress(content.encode()), name="long.jsonl.gz")
    assert report.request_count == 2
    assert [p.line for p in report.problems] == [2]
    assert "Line 2 is longer than" in report.problems[0].message


def test_a_csv_with_an_endless_line_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_LINE_BYTES", 1000)
    content = "review_id,review\nr1,fine\nr2," + "y" * 5000 + "\nr3,also fine\n"
    report = check(tmp_path, content, "csv", csv_options=REVIEWS)
    assert report.request_count == 2
    assert any("Line 3 is longer than" in p.message for p in report.problems)


@pytest.mark.parametrize(
    ("escape", "message"),
    [
        ("\\u0000", "contains a NUL character"),
        ("\\ud800", "half of a surrogate pair (\\ud800)"),
    ],
)
def test_it_reports_characters_text_cannot_hold(tmp_path, escape, message):
    line = good("a").replace('"Hello"', f'"Hel{escape}lo"')
    report = check(tmp_path, line + "\n" + good("b"))
    assert report.request_count == 1
    assert [p.line for p in report.problems] == [1]
    assert message in report.problems[0].message


def test_an_unexpected_reader_error_becomes_a_report(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("boom")

    monkeypatch.setattr(intake, "read_jsonl", broken)
    report = check(tmp_path, good("a"))
    assert "could not be read to the end (MemoryError)" in report.problems[0].message


def test_a_file_over_the_upload_limits_stops_with_a_report(tmp_path, settings):
    settings.MAX_UPLOAD_BATCHES = 2
    settings.MAX_BATCH_REQUESTS = 3
    report = check(tmp_path, "\n".join(good(f"r{n}") for n in range(10)))
    assert report.request_count == 7
    assert "more than 6 requests: one upload makes at most 2 batches" in report.problems[-1].message
    settings.MAX_BATCH_BYTES = 1000  # a gzip bomb: small on disk, large once decompressed
    bomb = gzip.compress(b"\n" * 10_000)
    report = check(tmp_path, bomb, name="bomb.jsonl.gz")
    assert "GB of text" in report.problems[0].message
