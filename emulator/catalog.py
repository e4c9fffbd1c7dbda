"""The models the emulator knows: what `GET /v1/models` lists and what a request may name.

Aliases (`claude-sonnet-4-5`) are listed beside their dated snapshots because the samples and the
SDK's examples use both; a message generated for an alias names the snapshot, as the API does.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    id: str
    display_name: str
    released: str  # RFC 3339
    max_tokens: int
    max_input_tokens: int = 200_000
    thinking: bool = True
    effort: bool = False
    snapshot: str | None = None  # for an alias: the dated id it resolves to


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("claude-sonnet-5", "Claude Sonnet 5", "2026-09-29T00:00:00Z", 128_000, 1_000_000,
              effort=True),
    ModelSpec("claude-opus-4-8", "Claude Opus 4.8", "2026-07-21T00:00:00Z", 128_000, 1_000_000,
              effort=True),
    ModelSpec("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z", 128_000, 1_000_000,
              effort=True),
    ModelSpec("claude-opus-4-6", "Claude Opus 4.6", "2026-02-04T00:00:00Z", 128_000, 1_000_000,
              effort=True),
    ModelSpec("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", 64_000,
              1_000_000, effort=True),
    ModelSpec("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z", 64_000,
              effort=True),
    ModelSpec("claude-opus-4-5", "Claude Opus 4.5", "2025-11-24T00:00:00Z", 64_000, effort=True,
              snapshot="claude-opus-4-5-20251101"),
    ModelSpec("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 64_000),
    ModelSpec("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 64_000,
              snapshot="claude-haiku-4-5-20251001"),
    ModelSpec("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 64_000),
    ModelSpec("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 64_000,
              snapshot="claude-sonnet-4-5-20250929"),
    ModelSpec("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z", 32_000),
    ModelSpec("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z", 32_000,
              snapshot="claude-opus-4-1-20250805"),
    ModelSpec("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "2025-02-24T00:00:00Z", 64_000),
    ModelSpec("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z", 8_192,
              thinking=False),
    ModelSpec("claude-3-haiku-20240307", "Claude Haiku 3", "2024-03-07T00:00:00Z", 4_096,
              thinking=False),
)  # fmt: skip

BY_ID = {model.id: model for model in MODELS}


def find(model_id: object) -> ModelSpec | None:
    return BY_ID.get(model_id) if isinstance(model_id, str) else None


def resolved_id(model_id: str) -> str:
    spec = BY_ID[model_id]
    return spec.snapshot or spec.id


def model_info(spec: ModelSpec) -> dict[str, Any]:
    """A `ModelInfo` body, capabilities included (the schema requires every key)."""

    def yes(flag: bool = True) -> dict[str, bool]:
        return {"supported": flag}

    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.display_name,
        "created_at": spec.released,
        "max_input_tokens": spec.max_input_tokens,
        "max_tokens": spec.max_tokens,
        "capabilities": {
            "batch": yes(),
            "citations": yes(),
            "code_execution": yes(spec.thinking),
            "context_management": {
                "supported": spec.thinking,
                "clear_thinking_20251015": yes(spec.thinking),
                "clear_tool_uses_20250919": yes(spec.thinking),
                "compact_20260112": yes(spec.effort),
            },
            "effort": {
                "supported": spec.effort,
                "low": yes(spec.effort),
                "medium": yes(spec.effort),
                "high": yes(spec.effort),
                "max": yes(spec.effort),
                "xhigh": None,
            },
            "image_input": yes(),
            "pdf_input": yes(),
            "structured_outputs": yes(spec.effort),
            "thinking": {
                "supported": spec.thinking,
                "types": {"enabled": yes(spec.thinking), "adaptive": yes(spec.effort)},
            },
        },
    }
