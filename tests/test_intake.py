"""The checker on good files and on at least forty kinds of bad ones."""

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from batches.intake.checking import check_file, compose_bodies, discard
from batches.intake.command_line import local_ranges
from batches.intake.templating import CsvOptions
from emulator.catalog import MODELS
from foundations.local_files import LimitedReader

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
WORKSPACE_MODELS = [{"id": m.id, "max_tokens": m.max_tokens} for m in MODELS]
REVIEWS = CsvOptions(
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


def check_path(path, fmt, **kwargs):
    kwargs.setdefault("models", WORKSPACE_MODELS)
    merged = check_file(local_ranges(path), path.stat().st_size, fmt, **kwargs)
    discard(merged)
    return merged.report


def check(tmp_path, content, fmt="jsonl", name=None, **kwargs):
    path = tmp_path / (name or f"upload.{fmt}")
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return check_path(path, fmt, **kwargs)


def previewed(item) -> dict:
    return json.loads(item["json"])


@pytest.mark.parametrize("sample", ["questions.jsonl", "mixed-requests.jsonl"])
def test_it_accepts_the_sample_jsonl_files(sample):
    report = check_path(SAMPLES / sample, "jsonl")
    assert report.ok, report.problems
    lines = (SAMPLES / sample).read_text().splitlines()
    assert report.request_count == sum(1 for line in lines if line.strip())


def test_it_accepts_the_sample_csv_with_a_template():
    report = check_path(SAMPLES / "reviews.csv", "csv", csv_options=REVIEWS)
    assert report.ok, report.problems
    assert report.request_count == 5
    last = report.preview[4]
    assert last["custom_id"] == "r5"
    assert previewed(last)["messages"][0]["content"].endswith("Ça marche très bien — merci !")
    assert '"really"' in previewed(report.preview[3])["messages"][0]["content"]


def test_it_accepts_a_bom_crlf_blank_lines_and_gzip(tmp_path):
    content = "\ufeff" + good("a") + "\r\n\r\n" + good("b") + "\r\n   \n"
    assert check(tmp_path, content).request_count == 2
    gz = gzip.compress(content.encode("utf-8"))
    report = check(tmp_path, gz, name="upload.jsonl.gz")
    assert report.ok and report.request_count == 2


def test_it_numbers_rows_when_there_is_no_id_column(tmp_path):
    options = CsvOptions(template="Say {word}", model="claude-haiku-4-5", max_tokens=5)
    report = check(tmp_path, "word\nhi\nbye\n", "csv", csv_options=options)
    assert [item["custom_id"] for item in report.preview] == ["row-1", "row-2"]


def test_it_estimates_tokens_and_the_batch_price(tmp_path):
    report = check(tmp_path, good("a", max_tokens=1000) + "\n" + good("b", max_tokens=1000))
    estimate = report.estimate
    # "Hello" is 2 tokens at 4 characters a token, and each message adds 4.
    assert estimate["input_tokens"] == 12
    # 2,000 output tokens at most, at half of $15 per million.
    assert estimate["max_output_cost"] == "0.0150"
    assert estimate["models"][0]["model"] == "claude-sonnet-4-5"


def test_the_estimate_walks_blocks_system_and_tools_and_sees_caching(tmp_path):
    blocks = [
        {"type": "text", "text": "x" * 40, "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
    ]
    line = good(
        "a", system="s" * 8, messages=[{"role": "user", "content": blocks}], temperature=0.5
    )
    report = check(tmp_path, line)
    assert report.ok, report.problems
    # (8 + 40) characters / 4 + 1,600 for the image + 4 for the message.
    assert report.estimate["input_tokens"] == 12 + 1600 + 4
    assert report.estimate["cached_requests"] == 1


def test_the_check_counts_the_usual_request_as_the_estimate_does(tmp_path):
    """The hot loop counts a request of one text message inline; every shape it counts must
    give what Estimate.add gives, per model."""
    from batches.intake.estimating import Estimate

    lines = [
        good("usual", max_tokens=300, messages=[{"role": "user", "content": "x" * 41}]),
        good("haiku", model="claude-haiku-4-5", messages=[{"role": "user", "content": "hé" * 9}]),
        good("system", system="s" * 8),
        good(
            "two",
            messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        ),
        good("blocks", messages=[{"role": "user", "content": [{"type": "text", "text": "yo"}]}]),
    ]
    expected = Estimate()
    for line in lines:
        expected.add(json.loads(line)["params"])
    report = check(tmp_path, "\n".join(lines))
    assert report.ok, report.problems
    assert report.estimate == expected.as_dict()
    assert report.estimate["input_tokens"] == 15 + 9 + 8 + 9 + 5


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
    ("custom_id ending in a newline", good("r1\n"), 1, "is not 1 to 64 letters"),
    (
        "NaN in a tool's input_schema",
        good(tools=[{"name": "t", "input_schema": {"type": "object"}}]).replace(
            '"object"}', '"object", "x": NaN}'
        ),
        1,
        "holds NaN, which is not a number JSON can carry",
    ),
    (
        "Infinity in metadata",
        good().replace('"max_tokens": 100', '"max_tokens": 100, "top_k": -Infinity'),
        1,
        "holds -Infinity, which is not a number JSON can carry",
    ),
    (
        "a number too large for a double",
        good(tools=[{"name": "t", "input_schema": {"type": "object"}}]).replace(
            '"object"}', '"object", "maximum": 1e400}'
        ),
        1,
        "too large to be a JSON number",
    ),
    (
        "an integer of 5,000 digits",
        good().replace('"max_tokens": 100', '"max_tokens": ' + "9" * 5000),
        1,
        "a number with thousands of digits",
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
    options = CsvOptions(**{**REVIEWS.as_dict(), **overrides})
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
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(good(f"id {n}") for n in range(250)))
    merged = check_file(
        local_ranges(path), path.stat().st_size, "jsonl", models=None, report_dir=str(tmp_path)
    )
    assert merged.report.problem_count == 250 and len(merged.report.problems) == 100
    rows = sum(len(Path(name).read_text().strip().splitlines()) for name in merged.report_paths)
    assert rows == 250  # every problem, in the report file
    discard(merged)
    assert not list(tmp_path.glob("check-*"))


def test_it_splits_a_file_over_the_request_limit(tmp_path, settings):
    lines = (good(f"r{n}") for n in range(100_001))
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines))
    report = check_path(path, "jsonl")
    assert report.ok
    assert [part["requests"] for part in report.parts] == [100_000, 1]
    refused = check_path(path, "jsonl", oversize="refuse")
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


def test_deeply_nested_brackets_are_reported_on_their_line_and_the_rest_is_checked(tmp_path):
    for depth in (1000, 1100, 100_000):
        nested = good("deep").replace('"Hello"', "[" * depth + "]" * depth)
        report = check(tmp_path, nested + "\n" + good("ok") + "\n" + good("bad", stream=True))
        assert report.request_count == 1
        assert [p.line for p in report.problems] == [1, 3]
        assert "nested too deeply" in report.problems[0].message, report.problems[0]


def test_valid_but_absurdly_nested_json_is_reported_not_crashed_on(tmp_path):
    item = json.loads(good("deep"))
    node: dict[str, Any] = {}
    item["params"]["metadata"] = node
    for _ in range(900):  # still readable JSON, beyond the schema validator's recursion limit
        node["user_id"] = {}
        node = node["user_id"]
    report = check(tmp_path, json.dumps(item))
    assert [p.message for p in report.problems] == [
        "params.metadata.user_id.user_id.user_id.user_id.user_id.user_id… is nested too deeply: "
        "903 levels of lists and objects, at most 64."
    ]


def test_an_endless_line_is_skipped_and_reported_without_holding_it(tmp_path, settings):
    settings.MAX_REQUEST_LINE_BYTES = 10_000
    content = good("a") + "\n" + "x" * 50_000 + "\n" + good("b") + "\n"
    report = check(tmp_path, gzip.compress(content.encode()), name="long.jsonl.gz")
    assert report.request_count == 2
    assert [p.line for p in report.problems] == [2]
    assert "Line 2 is longer than" in report.problems[0].message


def test_a_csv_with_an_endless_line_is_reported(tmp_path, settings):
    settings.MAX_REQUEST_LINE_BYTES = 1024
    content = "review_id,review\nr1,fine\nr2," + "y" * 5000 + "\nr3,also fine\n"
    report = check(tmp_path, content, "csv", csv_options=REVIEWS)
    assert report.request_count == 2
    assert any("Line 3 is longer than" in p.message for p in report.problems)


@pytest.mark.parametrize(
    ("escape", "message"),
    [
        ("\\u0000", "contains a NUL character"),
        ("\\ud800", "half of a surrogate pair"),
    ],
)
def test_it_reports_characters_text_cannot_hold(tmp_path, escape, message):
    line = good("a").replace('"Hello"', f'"Hel{escape}lo"')
    report = check(tmp_path, line + "\n" + good("b"))
    assert report.request_count == 1
    assert [p.line for p in report.problems] == [1]
    assert message in report.problems[0].message


def test_an_unexpected_reader_error_becomes_a_report():
    class Broken(LimitedReader):
        def read(self, size: int = -1) -> bytes:
            raise MemoryError("boom")

    merged = check_file(lambda start, end: Broken(io.BytesIO(), None), 100, "jsonl", models=None)
    assert "could not be read to the end (MemoryError)" in merged.report.problems[0].message


def test_a_file_over_the_upload_limits_stops_with_a_report(tmp_path, settings):
    settings.MAX_UPLOAD_BATCHES = 2
    settings.MAX_BATCH_REQUESTS = 3
    report = check(tmp_path, "\n".join(good(f"r{n}") for n in range(10)))
    assert report.request_count == 6
    assert "more than 6 requests: one upload makes at most 2 batches" in report.problems[-1].message


def test_a_gzip_of_zeros_stops_at_the_byte_cap_counting_the_skipped_line(tmp_path, settings):
    settings.MAX_UPLOAD_TEXT_BYTES = 20_000_000
    settings.MAX_REQUEST_LINE_BYTES = 1_000_000
    bomb = gzip.compress(b"0" * 200_000_000)  # 200 MB of one endless line, 200 KB on disk
    report = check(tmp_path, bomb, name="zeros.jsonl.gz")
    messages = [p.message for p in report.problems]
    assert any("more than 0.0 GB of text" in m or "GB of text" in m for m in messages), messages
    assert not report.complete


def test_a_gzip_of_newlines_stops_at_the_line_cap(tmp_path, settings):
    settings.MAX_UPLOAD_LINES = 100_000
    bomb = gzip.compress(b"\n" * 50_000_000)  # 50 million blank lines, 50 KB on disk
    report = check(tmp_path, bomb, name="newlines.jsonl.gz")
    assert "more than 100,000 lines" in report.problems[0].message
    assert report.problems[0].line <= 100_000 + 2**20 and not report.complete


def test_a_check_stops_at_the_time_cap_and_says_so(tmp_path, settings):
    path = tmp_path / "slow.jsonl"
    path.write_text("\n".join(good(f"r{n}") for n in range(5000)))
    from batches.intake.reading import Limits

    limits = Limits(max_bytes=10**9, max_lines=10**9, max_line_bytes=10**6, max_seconds=0.0)
    merged = check_file(
        local_ranges(path), path.stat().st_size, "jsonl", models=None, limits=limits
    )
    problem = merged.report.problems[0]
    assert "took longer than 0 seconds" in problem.message and "stopped at line" in problem.message
    assert not merged.report.complete


def check_in(path, processes, tmp_path):
    """A check of a JSONL file in `processes` segments, keeping its bodies and problem rows."""
    return check_file(
        local_ranges(path),
        path.stat().st_size,
        "jsonl",
        models=WORKSPACE_MODELS,
        processes=processes,
        keep_bodies=True,
        report_dir=str(tmp_path),
    )


def test_several_processes_find_what_one_does(tmp_path, settings):
    """A file checked in segments by forked processes gives the report a single pass gives,
    a custom_id repeated across the segments included."""
    settings.CHECK_PARALLEL_MIN_BYTES = 1
    lines = [good(f"r{n}") for n in range(3000)]
    lines[10] = good("dup")
    lines[2900] = good("dup")  # in the last segment, a duplicate of a line in the first
    lines[1500] = "{broken"
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n")
    reports = []
    for processes in (1, 3):
        merged = check_in(path, processes, tmp_path)
        assert len(merged.segments) == processes
        reports.append(merged.report)
        discard(merged)
    one, three = reports
    assert one.request_count == three.request_count == 2998
    assert [(p.line, p.message) for p in one.problems] == [
        (p.line, p.message) for p in three.problems
    ]
    assert [p.line for p in one.problems] == [1501, 2901]
    assert "already used on line 11" in three.problems[1].message
    assert one.estimate == three.estimate and one.parts == three.parts
    assert one.request_bytes == three.request_bytes


def _bodies(path, processes, tmp_path):
    """The create bodies of a check of `path` in `processes` segments, and whether the one
    body is the file the segments wrote (no copy)."""
    merged = check_in(path, processes, tmp_path)
    try:
        bodies = compose_bodies(merged, str(tmp_path))
        in_place = [body.path for body in bodies] == [merged.segments[0].accepted.body_path]
        contents = [Path(body.path).read_bytes() for body in bodies]
        for body, content in zip(bodies, contents, strict=True):
            assert body.size == len(content)
            Path(body.path).unlink()
        return contents, in_place
    finally:
        discard(merged)
        for segment in merged.segments:  # nothing left behind
            assert not Path(segment.accepted.body_path).exists()


@pytest.mark.parametrize(
    "shape",
    [
        "clean",
        "no final line break",
        "crlf",
        "broken and duplicate",
        "a segment of problems only",
        "split",
    ],
)
def test_several_processes_compose_the_bodies_one_does(tmp_path, settings, shape):
    """Byte for byte the same create bodies from one process or three; a file of valid lines
    in one batch is its own body, finished in place."""
    settings.CHECK_PARALLEL_MIN_BYTES = 1
    lines = [good(f"r{n}") for n in range(3000)]
    ending = "\n"
    if shape == "crlf":
        ending = "\r\n"  # a byte less in the body than the room kept: copied, not in place
    elif shape == "broken and duplicate":
        lines[10] = lines[2900] = good("dup")
        lines[1500] = "{broken"
    elif shape == "a segment of problems only":
        lines[900:2100] = ["{broken"] * 1200
    elif shape == "split":
        settings.MAX_BATCH_REQUESTS = 1000
    path = tmp_path / "many.jsonl"
    final = "" if shape == "no final line break" else ending
    path.write_text(ending.join(lines) + final, newline="")
    one, one_in_place = _bodies(path, 1, tmp_path)
    three, three_in_place = _bodies(path, 3, tmp_path)
    assert one == three
    requests = [request for body in one for request in json.loads(body)["requests"]]
    kept = [json.loads(line) for line in lines if line.startswith('{"')]
    if shape == "broken and duplicate":
        kept.pop(2900 - 1)  # the duplicate in the last segment is left out
    assert requests == kept
    assert len(one) == (3 if shape == "split" else 1)
    assert one_in_place == (shape != "split")
    # A segment with no valid request leaves its room empty: the rest is copied.
    assert three_in_place == (shape in ("clean", "no final line break"))


def test_previews_hold_a_few_kilobytes_of_a_huge_request(tmp_path):
    report = check(tmp_path, good("big", system="x" * 3_000_000))
    item = report.preview[0]
    assert item["truncated"] and len(item["json"]) <= 4096
    assert item["bytes"] > 3_000_000
