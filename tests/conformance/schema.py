"""Validation against the vendored subset of OpenAI's OpenAPI document (JSON Schema 2020-12)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

__all__ = ["completion_chunk_violations", "event_violations", "violations"]

_DOC = Path(__file__).with_name("openai-openapi.subset.json")


@functools.cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_DOC.read_text())
    return doc


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    doc = _document()
    if name not in doc["components"]["schemas"]:
        raise KeyError(f"{name} is not vendored; add it to ROOTS in tests/conformance/vendor.py")
    return Draft202012Validator({**doc, "$ref": f"#/components/schemas/{name}"})


def violations(name: str, instance: Any) -> list[str]:
    """Every way ``instance`` breaks schema ``name`` (empty when it conforms), best match first."""
    out = []
    for error in _validator(name).iter_errors(instance):
        deepest = best_match([error]) if not error.context else best_match(error.context)
        path = "/".join(map(str, deepest.absolute_path)) or "<root>"
        out.append(f"{path}: {deepest.message[:300]}")
    return out


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Responses stream event ``type`` -> the name of its schema (from ``ResponseStreamEvent``)."""
    schemas = _document()["components"]["schemas"]
    union = schemas["ResponseStreamEvent"]
    out = {}
    for option in union.get("anyOf") or union.get("oneOf"):
        name = option["$ref"].rsplit("/", 1)[1]
        out[schemas[name]["properties"]["type"]["enum"][0]] = name
    return out


def event_violations(event: Any) -> list[str]:
    """Every way one Responses stream event breaks the schema of its ``type``."""
    name = _event_schemas().get(event.get("type")) if isinstance(event, dict) else None
    if name is None:
        return [f"<root>: unknown event type {event.get('type') if isinstance(event, dict) else event!r}"]
    return [f"{name}: {v}" for v in violations(name, event)]


def completion_chunk_violations(chunk: Any) -> list[str]:
    """A streamed legacy completion chunk against ``CreateCompletionResponse``.

    OpenAI's document has no schema of its own for these chunks: they are the completion object,
    sent piece by piece, with ``finish_reason`` and ``usage`` null until the end (as OpenAI's own
    streams are). Those two nulls are the only allowance; everything else must conform.
    """
    if not isinstance(chunk, dict):
        return violations("CreateCompletionResponse", chunk)
    relaxed = {k: v for k, v in chunk.items() if not (k == "usage" and v is None)}
    relaxed["choices"] = [{**c, "finish_reason": c.get("finish_reason") or "stop"} if isinstance(c, dict) else c
                          for c in chunk.get("choices", [])]
    return violations("CreateCompletionResponse", relaxed)
