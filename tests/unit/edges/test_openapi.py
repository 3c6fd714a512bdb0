"""seawall's own OpenAPI document: valid OpenAPI 3.1, and every route the server knows is in it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

from seawall.config import parse_config
from seawall.config.stack import build_runtime
from seawall.edges import openapi
from seawall.edges.server import GatewayApp


def app(tmp_path: Path) -> GatewayApp:
    config = parse_config(yaml.safe_load(f"""
store: {{sqlite_path: "{tmp_path}/s.db", ledger_spill_path: "{tmp_path}/spill.jsonl"}}
models: [{{name: chat, deployments: [{{base_url: "http://127.0.0.1:9/v1"}}]}}]
"""))
    return GatewayApp(build_runtime(config))


def test_the_document_is_valid_openapi_3_1():
    doc = openapi.document("1.2.3")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema, dangling $refs included
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.2.3"


def test_every_route_is_documented_with_its_methods(tmp_path):
    gateway = app(tmp_path)
    paths = openapi.document("0")["paths"]
    routes = {path: route.methods for path, route in gateway.routes.items()}
    routes |= {name.replace("{id}", "{response_id}" if "responses" in name else "{model}"): route.methods
               for route, name, _ in gateway.item_routes.values()}
    assert set(routes) == set(paths)
    for path, methods in routes.items():
        documented = {m.upper() for m in paths[path] if m in ("get", "post", "delete", "put", "patch")}
        assert documented == set(methods), path


def test_errors_document_the_reason_and_retry_headers():
    chat = openapi.document("0")["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"x-seawall-reason", "retry-after-ms", "x-should-retry"} <= set(chat["503"]["headers"])
    messages = openapi.document("0")["paths"]["/v1/messages"]["post"]["responses"]
    assert messages["529"]["content"]["application/json"]["schema"]["$ref"].endswith("AnthropicError")
    assert all(re.fullmatch(r"[0-9]{3}", status) for status in chat)
