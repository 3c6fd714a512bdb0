"""OpenAI's moderations (``POST /v1/moderations``): request validation and the mock's classifier.

A moderation request goes to a model group of kind ``moderation`` (an OpenAI-compatible
deployment that serves ``/moderations``: OpenAI itself, or the mock). OpenAI's clients often omit
``model``; the gateway then routes to the first moderation group in its config, so existing code
works unchanged. The mock's classifier is a keyword table: deterministic, so tests can ask for a
flag and get it, in OpenAI's category schema.
"""

from __future__ import annotations

from typing import Any

import msgspec

from seawall.core.errors import InvalidRequest
from seawall.core.types import Payload
from seawall.providers.openai import estimate_tokens, load_json_object

__all__ = ["CATEGORIES", "classify", "parse_moderations", "response"]

#: OpenAI's moderation categories, in its order; the mock flags one when its text holds a keyword.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": ("idiot", "loser"),
    "harassment/threatening": ("watch your back",),
    "hate": ("hateful",),
    "hate/threatening": ("exterminate",),
    "illicit": ("shoplift",),
    "illicit/violent": ("build a bomb",),
    "self-harm": ("self-harm",),
    "self-harm/intent": ("want to hurt myself",),
    "self-harm/instructions": ("how to hurt myself",),
    "sexual": ("explicit",),
    "sexual/minors": ("csam",),
    "violence": ("kill", "attack"),
    "violence/graphic": ("gore",),
}
_encode = msgspec.json.encode


def _texts(value: Any) -> list[str] | None:
    """The texts to classify (one per result), or ``None`` if ``input`` is malformed."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, dict) and v.get("type") in ("text", "image_url") for v in value):
        # Multi-modal input is one item with one result; images count as no text.
        return [" ".join(str(v.get("text") or "") for v in value if v.get("type") == "text")]
    return None


def parse_moderations(raw: bytes, *, default_model: str | None = None) -> Payload:
    """Validate a moderations body; ``default_model`` stands in when the client names none."""
    body = load_json_object(raw)
    model = body.get("model", default_model)
    if model is None:
        raise InvalidRequest("'model' is required: this gateway has no moderation model configured.",
                             param="model", code="model_not_found", status=404)
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    if _texts(body.get("input")) is None:
        raise InvalidRequest("'input' must be a string, an array of strings or an array of text/image_url"
                             " objects.", param="input")
    if "model" not in body:
        body = {**body, "model": model}
    return Payload(model=model, body=body, estimated_prompt_tokens=estimate_tokens(raw), max_tokens=1)


def classify(text: str) -> dict[str, Any]:
    """One result in OpenAI's shape: each category flagged when its keyword appears (any case)."""
    lowered = text.lower()
    flags = {name: any(word in lowered for word in words) for name, words in CATEGORIES.items()}
    return {
        "flagged": any(flags.values()),
        "categories": flags,
        "category_scores": {name: 0.97 if hit else 0.0001 for name, hit in flags.items()},
        "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
    }


def response(body: dict[str, Any], *, id: str) -> bytes:
    """The mock's answer to a validated request: one result per input item."""
    texts = _texts(body.get("input")) or []
    return _encode({"id": id, "model": body.get("model"), "results": [classify(t) for t in texts]})
