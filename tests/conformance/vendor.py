"""Regenerate ``openai-openapi.subset.json`` from OpenAI's published OpenAPI document.

    .venv/bin/python -m tests.conformance.vendor path/to/openai-openapi.yaml

Keeps the component schemas the gateway's bodies and events are checked against (``ROOTS``) and
everything they reference, nothing else, so the vendored file stays small and reviewable. The
document is OpenAI's, under the MIT licence in ``openai-openapi.LICENSE`` beside it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOTS = (
    "Response",
    "ResponseStreamEvent",
    "ErrorResponse",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateModerationResponse",
    "Model",
    "ListModelsResponse",
)
OUT = Path(__file__).with_name("openai-openapi.subset.json")


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def subset(spec: dict[str, Any], roots: tuple[str, ...] = ROOTS) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    keep: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        found: set[str] = set()
        _refs(schemas[name], found)
        todo.extend(sorted(found - keep.keys()))
    info = {"title": spec["info"]["title"], "version": spec["info"]["version"],
            "license": "MIT, see openai-openapi.LICENSE", "x-seawall-roots": list(roots)}
    return {"openapi": spec["openapi"], "info": info, "components": {"schemas": dict(sorted(keep.items()))}}


def main(argv: list[str]) -> None:
    spec = yaml.load(Path(argv[0]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    OUT.write_text(json.dumps(subset(spec), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
