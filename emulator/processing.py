"""How a batch runs: driven by the clock, deterministic, with no background worker.

Request i (in request order) finishes at `created_at + base + (i + 1) * per_request`; the batch
ends when the last one does, or at cancel time plus a short grace, or at `expires_at`. Everything a
client sees is computed from those times when it asks. Each request's outcome is a pure function
of the request itself, so results are generated while they stream and never stored.
"""

import hashlib
import json
import math
import re
import secrets
import string
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from emulator import catalog
from emulator.models import (
    CHUNK_SIZE,
    EXPIRY,
    RESULTS_KEPT,
    EmulatedBatch,
    EmulatedRequestChunk,
    ProcessingStatus,
)
from emulator.validation import check_params

_BASE62 = string.digits + string.ascii_letters
# Chunk rows written per INSERT, so creating a huge batch holds a bounded number of blobs at once.
_CHUNKS_PER_INSERT = 5


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "01" + "".join(secrets.choice(_BASE62) for _ in range(length - 2))


def stable_id(prefix: str, *parts: str, length: int = 24) -> str:
    """An id that is always the same for the same parts (generated results must not change)."""
    digest = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest(), "big")
    chars = []
    for _ in range(length - 2):
        digest, rest = divmod(digest, 62)
        chars.append(_BASE62[rest])
    return prefix + "01" + "".join(chars)


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Creating ------------------------------------------------------------------------------------


def create_batch(
    workspace: str, requests: list, *, slow: bool = False, betas: list[str] | None = None
) -> EmulatedBatch:
    """Store a batch whose requests have passed `validation.parse_create_body`.

    `slow` makes it take 48 h, so it is still running at its 24 h expiry: about half of its
    requests succeed or error, the rest end `expired`.
    """
    now = timezone.now()
    count = len(requests)
    base = settings.EMULATOR_BASE_SECONDS
    per_request = settings.EMULATOR_SECONDS_PER_REQUEST
    if slow:
        base, per_request = 0.0, 2 * EXPIRY.total_seconds() / count
    with transaction.atomic():
        batch = EmulatedBatch.objects.create(
            batch_id=random_id("msgbatch_"),
            workspace=workspace,
            request_count=count,
            created_at=now,
            expires_at=now + EXPIRY,
            base_seconds=base,
            seconds_per_request=per_request,
            cancel_seconds=settings.EMULATOR_CANCEL_SECONDS,
            betas=betas or [],
        )
        pending = []
        for number, start in enumerate(range(0, count, CHUNK_SIZE)):
            part = requests[start : start + CHUNK_SIZE]
            pending.append(
                EmulatedRequestChunk(
                    batch=batch,
                    number=number,
                    first_index=start,
                    data=EmulatedRequestChunk.pack([[r["custom_id"], r["params"]] for r in part]),
                    outcomes="".join(
                        "e" if check_params(r["params"], betas) else "s" for r in part
                    ),
                )
            )
            if len(pending) == _CHUNKS_PER_INSERT:
                EmulatedRequestChunk.objects.bulk_create(pending)
                pending = []
        EmulatedRequestChunk.objects.bulk_create(pending)
    return batch


# The clock -------------------------------------------------------------------------------------


def finished_by(batch: EmulatedBatch, moment: datetime) -> int:
    """How many requests (a prefix in request order) have been processed at `moment`."""
    elapsed = (moment - batch.created_at).total_seconds() - batch.base_seconds
    if elapsed < 0:
        return 0
    if batch.seconds_per_request <= 0:
        return batch.request_count
    # A hair of tolerance: float division must not leave the last request unfinished at its time.
    return min(batch.request_count, math.floor(elapsed / batch.seconds_per_request + 1e-9))


def natural_end(batch: EmulatedBatch) -> datetime:
    return batch.created_at + timedelta(
        seconds=batch.base_seconds + batch.request_count * batch.seconds_per_request
    )


def end_time(batch: EmulatedBatch) -> datetime:
    """When the batch ends (or ended), unless a cancel comes first."""
    if batch.cancel_initiated_at is not None:
        return batch.cancel_initiated_at + timedelta(seconds=batch.cancel_seconds)
    return min(natural_end(batch), batch.expires_at)


def cutoff(batch: EmulatedBatch) -> datetime:
    """The moment after which no further request is processed."""
    cut = min(natural_end(batch), batch.expires_at)
    if batch.cancel_initiated_at is not None:
        cut = min(cut, batch.cancel_initiated_at)
    return cut


def status_at(batch: EmulatedBatch, now: datetime) -> str:
    if batch.ended_at is not None or now >= end_time(batch):
        return ProcessingStatus.ENDED
    if batch.cancel_initiated_at is not None:
        return ProcessingStatus.CANCELING
    return ProcessingStatus.IN_PROGRESS


def _kind_counts(batch: EmulatedBatch, processed: int) -> tuple[int, int]:
    """(succeeded, errored) among the first `processed` requests."""
    succeeded = errored = 0
    for first_index, outcomes in batch.chunks.order_by("number").values_list(
        "first_index", "outcomes"
    ):
        if first_index >= processed:
            break
        head = outcomes[: processed - first_index]
        errors = head.count("e")
        errored += errors
        succeeded += len(head) - errors
    return succeeded, errored


def unprocessed_fate(batch: EmulatedBatch) -> str:
    """What the requests not processed by the cutoff become."""
    return "canceled" if batch.cancel_initiated_at is not None else "expired"


def finalize_if_due(batch: EmulatedBatch, now: datetime | None = None) -> EmulatedBatch:
    """Record the final counts the first time a batch is seen past its end; a no-op after."""
    now = now or timezone.now()
    if batch.ended_at is not None or now < end_time(batch):
        return batch
    with transaction.atomic():
        locked = EmulatedBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.ended_at is None:
            processed = finished_by(locked, cutoff(locked))
            locked.succeeded, locked.errored = _kind_counts(locked, processed)
            rest = locked.request_count - processed
            locked.canceled = rest if unprocessed_fate(locked) == "canceled" else 0
            locked.expired = rest if unprocessed_fate(locked) == "expired" else 0
            locked.ended_at = end_time(locked)
            locked.save(update_fields=["ended_at", "succeeded", "errored", "canceled", "expired"])
    return locked


def cancel(batch: EmulatedBatch) -> EmulatedBatch:
    """Ask a running batch to stop; canceling an ending or ended batch changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        locked = EmulatedBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.cancel_initiated_at is None and status_at(locked, now) == "in_progress":
            locked.cancel_initiated_at = now
            locked.save(update_fields=["cancel_initiated_at"])
    return locked


# What a client sees ----------------------------------------------------------------------------


def batch_body(batch: EmulatedBatch, results_url: str | None, now: datetime | None = None) -> dict:
    """The `MessageBatch` object as the API would show it at `now`."""
    now = now or timezone.now()
    batch = finalize_if_due(batch, now)
    status = status_at(batch, now)
    counts = {"processing": batch.request_count, "succeeded": 0, "errored": 0}
    counts |= {"canceled": 0, "expired": 0}
    if status == ProcessingStatus.ENDED:
        counts = {
            "processing": 0,
            "succeeded": batch.succeeded,
            "errored": batch.errored,
            "canceled": batch.canceled,
            "expired": batch.expired,
        }
    elif settings.EMULATOR_PROGRESSIVE_COUNTS:
        processed = finished_by(batch, min(now, cutoff(batch)))
        succeeded, errored = _kind_counts(batch, processed)
        counts |= {
            "processing": batch.request_count - processed,
            "succeeded": succeeded,
            "errored": errored,
        }
    archived_at = batch.created_at + RESULTS_KEPT
    return {
        "id": batch.batch_id,
        "type": "message_batch",
        "processing_status": str(status),
        "request_counts": counts,
        "ended_at": rfc3339(batch.ended_at),
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at),
        "archived_at": rfc3339(archived_at) if now >= archived_at else None,
        "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
        "results_url": results_url if status == ProcessingStatus.ENDED else None,
    }


def results_lines(batch: EmulatedBatch) -> Iterator[bytes]:
    """Every result line of an ended batch, one chunk row in memory at a time.

    The order is deliberately not the request order (chunks last to first, each shuffled by a hash
    of `custom_id`), as the API warns: clients must match results by `custom_id`.
    """
    processed = finished_by(batch, cutoff(batch))
    fate = unprocessed_fate(batch)
    chunks = batch.chunks.order_by("-number").only("first_index", "data")
    for chunk in chunks.iterator(chunk_size=1):
        entries = list(enumerate(chunk.unpack(), start=chunk.first_index))
        entries.sort(key=lambda entry: hashlib.md5(entry[1][0].encode()).digest())  # noqa: S324
        for index, (custom_id, params) in entries:
            if index < processed:
                result = outcome(batch.batch_id, custom_id, params, batch.betas)
            else:
                result = {"type": fate}
            yield (json.dumps({"custom_id": custom_id, "result": result}) + "\n").encode()


# One request's outcome -------------------------------------------------------------------------


def outcome(batch_id: str, custom_id: str, params: dict, betas: Iterable[str] | None = ()) -> dict:
    """The result of one processed request: `succeeded` with a message, or `errored`."""
    problem = check_params(params, betas)
    if problem:
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": problem},
                "request_id": stable_id("req_", batch_id, custom_id),
            },
        }
    return {"type": "succeeded", "message": generate_message(batch_id, custom_id, params)}


def _text_of(content: str | Iterable[object] | None) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return " ".join(parts)


def _tokens(text: str) -> int:
    # About four characters a token, as for English text.
    return math.ceil(len(text) / 4)


def _input_tokens(params: dict) -> tuple[int, int]:
    """(uncached input tokens, tokens of the prompt marked for caching)."""
    total = cached = 0
    system = params.get("system") or []
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
    for message in params["messages"]:
        content = message["content"]
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        else:
            blocks.extend(content)
    for block in blocks:
        if block.get("type") in ("image", "document"):
            size = 1500  # an image or a PDF page costs about this much whatever its bytes
        else:
            size = _tokens(json.dumps(block.get("text", block), ensure_ascii=False))
        total += size
        if "cache_control" in block:
            cached = total  # caching covers the whole prefix up to the marked block
    total += sum(_tokens(json.dumps(tool)) for tool in params.get("tools") or [])
    total += 4 * len(params["messages"])
    return total - cached, cached


# Sentences of a made-up answer: read in a loop from a place chosen by the request, so the text is
# stable for a request, differs between requests, and grows as long as the answer needs to be.
_SENTENCES = (
    "This is a sandbox answer, written by the local emulator rather than by a model.",
    "It is derived from your prompt alone, so the same request always gets the same reply.",
    "Its length grows with the question, which gives the token counts and prices real numbers.",
    "Results, downloads and costs behave here exactly as they will with the real API.",
    "Point the workspace at the real API with a key to get real answers instead.",
)
_WORDS = " ".join(_SENTENCES).split()
_SENTENCE_STARTS = [
    sum(len(sentence.split()) for sentence in _SENTENCES[:index])
    for index in range(len(_SENTENCES))
]
# A prompt that asks to choose among these gets one of them, so a classification CSV comes back
# with a believable answer column.
_LABEL_SETS = (("positive", "negative", "neutral"), ("yes", "no"), ("true", "false"))


# For a sentiment label, a word count good enough for a demo: the sandbox is no model.
_GOOD_WORDS = {"excellent", "great", "good", "love", "kind", "bien", "perfect", "happy", "best"}
_BAD_WORDS = {"terrible", "bad", "awful", "never", "late", "broken", "worst", "poor", "hate"}


def _sentiment(text: str) -> str:
    words = re.findall(r"[a-zà-ÿ]+", text.lower())
    score = sum(word in _GOOD_WORDS for word in words) - sum(word in _BAD_WORDS for word in words)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def _answer_words(prompt: str, seed: int, wanted: int) -> list[str]:
    lowered = prompt.lower()
    for labels in _LABEL_SETS:
        if all(re.search(rf"\b{label}\b", lowered) for label in labels):
            if labels[0] == "positive":
                # Judge the text after the instruction, not the instruction's own words.
                subject = prompt.rsplit(":", 1)[-1] if ":" in prompt else prompt
                return [_sentiment(subject).capitalize()]
            return [labels[seed % len(labels)].capitalize()]
    start = _SENTENCE_STARTS[seed % len(_SENTENCES)]
    topic = " ".join(prompt.split()[:12]) or "an empty prompt"
    return [f"On “{topic}”:"] + [_WORDS[(start + i) % len(_WORDS)] for i in range(wanted)]


def _tool_input(schema: dict, prompt: str) -> dict:
    """Arguments for a tool call that fit the tool's `input_schema`'s required fields."""
    # By the property's JSON type; one that names none (None) gets "sandbox" like any other.
    values: dict[str | None, object] = {
        "string": prompt[:40] or "sandbox",
        "integer": 1,
        "number": 1.0,
        "boolean": True,
    }
    properties = schema.get("properties") or {}
    return {
        name: values.get((properties.get(name) or {}).get("type"), "sandbox")
        for name in schema.get("required") or list(properties)[:1]
    }


# Tokens a non-text block costs in the emulator's count (a tool call, a search, a thought).
BLOCK_TOKENS = 8
# Words in the last user message that ask the emulator for the API's rarer answers, so tests and
# the sandbox can show them: a refusal, and a turn paused while a server tool works.
REFUSAL_WORD = "[refusal]"
PAUSE_WORD = "[pause_turn]"


def _web_search(batch_id: str, custom_id: str, prompt: str) -> tuple[list[dict], dict]:
    """A server tool call to web search and its results, and a citation of the first."""
    tool_use_id = stable_id("srvtoolu_", batch_id, custom_id)
    query = " ".join(prompt.split()[:8]) or "sandbox"
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "sandbox"
    results: list[dict[str, Any]] = [
        {
            "type": "web_search_result",
            "url": f"https://example.com/{slug}/{number}",
            "title": f"{query[:60]}: sandbox source {number}",
            "encrypted_content": stable_id("enc_", tool_use_id, str(number), length=40),
            "page_age": "2 days ago" if number == 1 else None,
        }
        for number in (1, 2)
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "server_tool_use", "id": tool_use_id, "name": "web_search",
         "input": {"query": query}, "caller": {"type": "direct"}},
        {"type": "web_search_tool_result", "tool_use_id": tool_use_id, "content": results,
         "caller": {"type": "direct"}},
    ]  # fmt: skip
    citation = {
        "type": "web_search_result_location",
        "url": results[0]["url"],
        "title": results[0]["title"],
        "encrypted_index": stable_id("idx_", tool_use_id, length=20),
        "cited_text": "A sandbox source, found by the emulator's pretend search.",
    }
    return blocks, citation


def _within(content: list[dict], cap: int) -> tuple[list[dict], int, bool]:
    """The blocks that fit in `cap` output tokens (a text cut at its last fitting word), their
    tokens, and whether anything was cut: the API never answers more than max_tokens."""
    kept: list[dict] = []
    spent = 0
    for block in content:
        if block["type"] == "text":
            words = block["text"].split(" ")
            if spent + len(words) > cap:
                if cap > spent:
                    kept.append({**block, "text": " ".join(words[: cap - spent])})
                return kept, cap, True
            spent += len(words)
        else:
            if spent + BLOCK_TOKENS > cap:
                return kept, spent, True
            spent += BLOCK_TOKENS
        kept.append(block)
    return kept, spent, False


def generate_message(
    batch_id: str, custom_id: str, params: dict, service_tier: str = "batch"
) -> dict:
    """A `Message` as Claude might answer, derived only from the request.

    A client tool is called when one is defined (and tool_choice allows); a web search server
    tool is used when it is offered; the last message's words `[refusal]` and `[pause_turn]`
    ask for those stop reasons. Output tokens never exceed `max_tokens`.
    """
    prompt = _text_of(params["messages"][-1]["content"]).strip()
    seed = int(hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8], 16)
    wanted = 12 + seed % 40 + len(prompt.split()) // 2
    words = _answer_words(prompt, seed, wanted)
    content: list[dict[str, Any]] = []
    stop_reason = "end_turn"
    tools = [t for t in params.get("tools") or [] if "input_schema" in t]
    searching = any(
        str(t.get("type", "")).startswith("web_search_") for t in params.get("tools") or []
    )
    choice = params.get("tool_choice") or {"type": "auto"}
    thinking = params.get("thinking") or {}
    if thinking.get("type") == "enabled":
        content.append(
            {
                "type": "thinking",
                "thinking": f"The user asks: {prompt[:80]}",
                "signature": stable_id("sig_", batch_id, custom_id, length=40),
            }
        )
    if REFUSAL_WORD in prompt.lower():
        content.append(
            {"type": "text", "text": "I can't help with that request.", "citations": None}
        )
        stop_reason = "refusal"
    elif tools and choice.get("type") != "none":
        tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        content.append(
            {"type": "text", "text": f"I'll use the {tool['name']} tool.", "citations": None}
        )
        content.append(
            {
                "type": "tool_use",
                "id": stable_id("toolu_", batch_id, custom_id),
                "name": tool["name"],
                "input": _tool_input(tool["input_schema"], prompt),
                "caller": {"type": "direct"},
            }
        )
        stop_reason = "tool_use"
    elif (searching and choice.get("type") != "none") or PAUSE_WORD in prompt.lower():
        search_blocks, citation = _web_search(batch_id, custom_id, prompt)
        content.extend(search_blocks)
        if PAUSE_WORD in prompt.lower():
            stop_reason = "pause_turn"  # the search is still working: send the turn back as is
        else:
            content.append({"type": "text", "text": " ".join(words), "citations": [citation]})
    elif words:
        content.append({"type": "text", "text": " ".join(words), "citations": None})
    content, output_tokens, cut = _within(content, params["max_tokens"])
    if cut:
        stop_reason = "max_tokens"
    # A search counts when its call is in the answer (max_tokens may have cut it off).
    searches = sum(1 for block in content if block["type"] == "server_tool_use")
    uncached, cached = _input_tokens(params)
    return {
        "id": stable_id("msg_", batch_id, custom_id),
        "type": "message",
        "role": "assistant",
        "model": catalog.resolved_id(params["model"]),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": None,
        "container": None,
        "usage": {
            "input_tokens": uncached,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cached,
            "cache_read_input_tokens": 0,
            "cache_creation": None,
            "inference_geo": None,
            "output_tokens_details": None,
            "server_tool_use": (
                {"web_search_requests": searches, "web_fetch_requests": 0} if searches else None
            ),
            "service_tier": service_tier,
        },
    }
