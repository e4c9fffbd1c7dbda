"""`POST /v1/messages` on the emulator: the official SDK's `messages.create` cannot tell it from
the API, every answer fits the published `Message` schema, and the API's rarer answers (a web
search with its sources, pause_turn, refusal) come on demand, never above `max_tokens`."""

import anthropic
import pytest

from emulator import catalog
from emulator.faults import set_key_faults
from tests.test_emulator_schemas import assert_valid

KEY = "sk-test-messages"
AUTH = {"x-api-key": KEY}


def params(text="What is the capital of France?", **extra) -> dict:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    } | extra


WEB_SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = [{"name": "weather", "input_schema": CITY}]


def test_the_sdk_creates_a_message_answered_at_the_standard_tier(emulator_sdk):
    sdk = emulator_sdk(KEY)
    message = sdk.messages.create(**params())
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == catalog.resolved_id("claude-sonnet-4-6")
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and "capital of France" in message.content[0].text
    assert message.usage.service_tier == "standard"
    assert 0 < message.usage.output_tokens <= 256 and message.usage.input_tokens > 0
    # The same request gets the same text; each call is a message of its own.
    again = sdk.messages.create(**params())
    assert again.content[0].text == message.content[0].text and again.id != message.id


def test_refused_requests_and_faults_reach_the_sdk_as_the_apis_errors(emulator_sdk):
    sdk = emulator_sdk(KEY)
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.create(**params(max_tokens=1_000_000), timeout=30)
    assert "max_tokens: 1000000 > 64000" in str(refused.value)
    with pytest.raises(anthropic.BadRequestError) as thinking:
        thinks = {"type": "enabled", "budget_tokens": 2000}
        sdk.messages.create(**params(max_tokens=2000, thinking=thinks))
    assert "budget_tokens" in str(thinking.value)
    with pytest.raises(anthropic.BadRequestError) as streaming:
        sdk.messages.create(**params(), extra_body={"stream": True})
    assert "does not stream" in str(streaming.value)
    set_key_faults(KEY, rate_429=1.0, retry_after_seconds=0)
    with pytest.raises(anthropic.RateLimitError):
        sdk.with_options(max_retries=0).messages.create(**params())


@pytest.mark.parametrize(
    ("name", "sent", "stop_reason", "blocks"),
    [
        ("plain", params(), "end_turn", ["text"]),
        ("capped", params("Write a long essay", max_tokens=3), "max_tokens", ["text"]),
        ("silent", params(max_tokens=0), "max_tokens", []),
        ("thinking", params(max_tokens=1100, thinking={"type": "enabled", "budget_tokens": 1024}),
         "end_turn", ["thinking", "text"]),
        ("tool", params("Weather in Oslo?", tools=WEATHER), "tool_use", ["text", "tool_use"]),
        ("tool cut short", params("Weather in Oslo?", tools=WEATHER, max_tokens=6), "max_tokens",
         ["text"]),
        ("web search", params("Latest on the Mars rover", tools=WEB_SEARCH), "end_turn",
         ["server_tool_use", "web_search_tool_result", "text"]),
        ("paused", params("Research this [pause_turn]", tools=WEB_SEARCH), "pause_turn",
         ["server_tool_use", "web_search_tool_result"]),
        ("refused", params("Please [refusal] this"), "refusal", ["text"]),
        ("search cut short", params("News", tools=WEB_SEARCH, max_tokens=9), "max_tokens",
         ["server_tool_use"]),
        ("search cut off", params("News", tools=WEB_SEARCH, max_tokens=3), "max_tokens", []),
        ("search turned off", params("News", tools=WEB_SEARCH, tool_choice={"type": "none"}),
         "end_turn", ["text"]),
    ],
)  # fmt: skip
def test_every_answer_fits_the_schema_and_never_exceeds_max_tokens(
    emulator_http, name, sent, stop_reason, blocks
):
    response = emulator_http.post("/v1/messages", json=sent, headers=AUTH)
    assert response.status_code == 200, response.text
    message = response.json()
    assert_valid("Message", message)
    assert message["stop_reason"] == stop_reason
    assert [block["type"] for block in message["content"]] == blocks
    assert message["usage"]["output_tokens"] <= sent["max_tokens"]
    searches = sum(block["type"] == "server_tool_use" for block in message["content"])
    server = message["usage"]["server_tool_use"]
    assert (server or {}).get("web_search_requests", 0) == searches  # only searches it made
    if name == "web search":
        results = message["content"][1]["content"]
        assert results[0]["url"].startswith("https://example.com/")
        assert message["content"][2]["citations"][0]["url"] == results[0]["url"]
        assert message["usage"]["server_tool_use"]["web_search_requests"] == 1


def test_the_same_shapes_come_back_from_a_batch(emulator_http, frozen_now):
    requests = [
        {"custom_id": "paused", "params": params("Go on [pause_turn]")},
        {"custom_id": "refused", "params": params("[refusal] now")},
        {"custom_id": "thinking-cut", "params": params(
            "Think hard", max_tokens=1025, thinking={"type": "enabled", "budget_tokens": 1024})},
    ]  # fmt: skip
    created = emulator_http.post("/v1/messages/batches", json={"requests": requests}, headers=AUTH)
    frozen_now.shift(30)
    lines = emulator_http.get(f"/v1/messages/batches/{created.json()['id']}/results", headers=AUTH)
    import json

    results = {row["custom_id"]: row["result"] for row in map(json.loads, lines.text.splitlines())}
    assert results["paused"]["message"]["stop_reason"] == "pause_turn"
    assert results["refused"]["message"]["stop_reason"] == "refusal"
    for result in results.values():
        assert_valid("MessageBatchIndividualResponse", {"custom_id": "x", "result": result})
        message = result["message"]
        assert message["usage"]["service_tier"] == "batch"
        assert message["usage"]["output_tokens"] <= 1025


def test_bodies_that_are_not_a_request_get_the_apis_envelope(emulator_http):
    for body, message in [
        (b"{not json", "Request body is not valid JSON"),
        (b"[1, 2]", "Input should be a valid dictionary"),
        (b'{"model": "x", "max_tokens": NaN, "messages": []}', "NaN is not valid JSON"),
        (b'{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]}',
         "max_tokens: Field required"),
    ]:  # fmt: skip
        response = emulator_http.post(
            "/v1/messages", content=body, headers={**AUTH, "content-type": "application/json"}
        )
        assert response.status_code == 400, body
        assert_valid("ErrorResponse", response.json())
        assert message in response.json()["error"]["message"], response.json()
    assert emulator_http.post("/v1/messages", json=params()).status_code == 401
    assert emulator_http.get("/v1/messages", headers=AUTH).status_code == 405
