"""``GET /openapi.json``: seawall's own public API as an OpenAPI 3.1 document.

Written by hand, not generated: the gateway forwards bodies it does not model field by field
(only what it validates and acts on is described here; OpenAI's and Anthropic's own documents
describe the rest), and the value of this document is what seawall adds: which paths exist, what
each answers, the error shapes with their headers (``x-seawall-reason``, ``retry-after-ms``,
``x-should-retry``, ``x-ratelimit-*``) and the request headers it honours (``x-request-timeout``,
``x-request-id``). A test checks that every route the server knows is documented with its methods
and that the document is valid OpenAPI 3.1.
"""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_JSON = "application/json"
_SSE = "text/event-stream"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_COMMON_HEADERS = {
    "x-request-id": _header("x-request-id", "The request's id: the client's own x-request-id when it is a"
                            " sane token, else one the gateway made. Also in every log line and ledger row."),
}
_ERROR_HEADERS = {
    **_COMMON_HEADERS,
    "x-seawall-reason": _header("x-seawall-reason", "Why the request was refused or failed, machine-readable"
                                " (quota_rpm, shed_queue_full, upstream_429, deadline, ...)."),
    "retry-after": _header("retry-after", "Whole seconds to wait before retrying (429 and 503 always carry it).",
                           {"type": "integer", "minimum": 1}),
    "retry-after-ms": _header("retry-after-ms", "The same wait in milliseconds (the official SDKs read it).",
                              {"type": "integer", "minimum": 1}),
    "x-should-retry": _header("x-should-retry", "'false' when a retry cannot help soon (a daily budget spent).",
                              {"type": "string", "enum": ["true", "false"]}),
}


def _error_responses(anthropic: bool = False) -> dict[str, Any]:
    schema = _ref("AnthropicError" if anthropic else "Error")
    out = {}
    for status, what in (("400", "Invalid request; `param` names the field."), ("401", "Missing or invalid key."),
                         ("403", "The key may not use this model."), ("404", "Unknown model or path."),
                         ("413", "Body over the size limit."), ("415", "Body is not JSON."),
                         ("429", "A quota (or the failed-auth throttle) refused it; wait retry-after."),
                         ("502", "The upstream failed."),
                         ("503", "Shed by admission (overload), or every deployment is unavailable."),
                         ("504", "The upstream or the request's deadline timed out.")):
        out[status] = {"description": what, "headers": _ERROR_HEADERS,
                       "content": {_JSON: {"schema": schema}}}
    if anthropic:
        out["529"] = {"description": "Overloaded (Anthropic's status for 503).", "headers": _ERROR_HEADERS,
                      "content": {_JSON: {"schema": schema}}}
    return out


def _request_headers() -> list[dict[str, Any]]:
    return [
        {"name": "x-request-timeout", "in": "header", "required": False,
         "description": "Seconds this request may take in all (bounded by server.max_timeout_s); the deadline"
                        " every queue and upstream attempt is held to.", "schema": {"type": "number",
                                                                                   "exclusiveMinimum": 0}},
        {"name": "x-request-id", "in": "header", "required": False,
         "description": "Your id for the request (<= 128 of [A-Za-z0-9-_.:]); echoed back.",
         "schema": {"type": "string", "maxLength": 128}},
    ]


def _post(summary: str, request: str, ok: dict[str, Any], *, tag: str, anthropic: bool = False,
          stream: bool = True) -> dict[str, Any]:
    content = {_JSON: {"schema": ok}}
    if stream:
        content[_SSE] = {"schema": {"type": "string", "description": "Server-sent events (when `stream` is true)."}}
    return {"post": {
        "summary": summary, "tags": [tag], "operationId": summary.replace(" ", "_").lower(),
        "parameters": _request_headers(),
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(request)}}},
        "responses": {"200": {"description": "The answer, or a stream of events.", "headers": _COMMON_HEADERS,
                              "content": content}, **_error_responses(anthropic)},
    }}


def _get(summary: str, ok: dict[str, Any], *, tag: str, errors: bool = True,
         content_type: str = _JSON) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "headers": _COMMON_HEADERS,
                                         "content": {content_type: {"schema": ok}}}}
    if errors:
        responses.update(_error_responses())
    return {"summary": summary, "tags": [tag], "operationId": summary.replace(" ", "_").lower(),
            "responses": responses}


def _id_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _schemas() -> dict[str, Any]:
    model_field = {"type": "string", "description": "A model group name from the gateway's config."}
    open_object = {"type": "object", "additionalProperties": True}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
        "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
            "type": {"const": "error"}, "request_id": {"type": "string"},
            "error": {"type": "object", "required": ["type", "message"],
                      "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}},
        "ChatRequest": {**open_object, "required": ["model", "messages"], "description":
                        "OpenAI's CreateChatCompletionRequest; forwarded as sent (the model name may be rewritten).",
                        "properties": {"model": model_field, "messages": {"type": "array", "minItems": 1},
                                       "stream": {"type": "boolean"}, "service_tier": {
                                           "type": "string", "enum": ["auto", "default", "flex", "priority", "scale"],
                                           "description": "May lower the request's criticality, never raise it."}}},
        "CompletionRequest": {**open_object, "required": ["model", "prompt"], "description":
                              "OpenAI's legacy CreateCompletionRequest; passed through to OpenAI-compatible"
                              " deployments (Anthropic ones answer 400).",
                              "properties": {"model": model_field, "prompt": {}, "max_tokens": {"type": "integer"},
                                             "stream": {"type": "boolean"}}},
        "EmbeddingRequest": {**open_object, "required": ["model", "input"],
                             "properties": {"model": model_field, "input": {}}},
        "ModerationRequest": {**open_object, "required": ["input"], "description":
                              "OpenAI's CreateModerationRequest, sent to a model group of kind 'moderation'"
                              " (without 'model': the first such group).",
                              "properties": {"model": model_field, "input": {}}},
        "ResponsesRequest": {**open_object, "required": ["model", "input"], "description":
                             "OpenAI's CreateResponse, served through chat completions: function tools only;"
                             " store and previous_response_id in the gateway's database.",
                             "properties": {"model": model_field, "input": {}, "instructions": {"type": "string"},
                                            "previous_response_id": {"type": "string"},
                                            "store": {"type": "boolean", "default": True},
                                            "stream": {"type": "boolean"}, "tools": {"type": "array"}}},
        "MessagesRequest": {**open_object, "required": ["model", "messages", "max_tokens"],
                            "description": "Anthropic's Messages request; native to Anthropic deployments,"
                                           " translated for OpenAI-compatible ones.",
                            "properties": {"model": model_field, "messages": {"type": "array", "minItems": 1},
                                           "max_tokens": {"type": "integer", "minimum": 1}}},
        "CountTokensRequest": {**open_object, "required": ["model", "messages"],
                               "properties": {"model": model_field, "messages": {"type": "array", "minItems": 1}}},
        "CountTokensResponse": {"type": "object", "required": ["input_tokens"], "properties": {
            "input_tokens": {"type": "integer", "description": "An estimate that errs high (no tokenizer)."}}},
        "OpenAIObject": {**open_object, "description": "The OpenAI object for the endpoint (chat.completion,"
                                                       " text_completion, response, list of embeddings)."},
        "AnthropicMessage": {**open_object, "description": "An Anthropic message object."},
        "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
            "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
            "owned_by": {"type": "string"}}},
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
        "DeletedResponse": {"type": "object", "required": ["id", "object", "deleted"], "properties": {
            "id": {"type": "string"}, "object": {"const": "response.deleted"}, "deleted": {"const": True}}},
        "Health": {**open_object, "required": ["status"], "properties": {"status": {"type": "string"}}},
    }


def document(version: str) -> dict[str, Any]:
    """The whole document for a gateway of ``version``."""
    responses_item: dict[str, Any] = {
        "parameters": [_id_param("response_id", "A response id (resp_...).")],
        "get": _get("Retrieve a response", _ref("OpenAIObject"), tag="OpenAI"),
        "delete": _get("Delete a response", _ref("DeletedResponse"), tag="OpenAI"),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "seawall", "version": version, "description": (
            "An LLM API gateway. The OpenAI and Anthropic endpoints keep their providers' own request and"
            " response formats; what seawall adds is described here: admission, quotas, failover and the"
            " headers that say why a request was refused."), "license": {"name": "Apache-2.0",
                                                                       "identifier": "Apache-2.0"}},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A seawall API key or a JWT."},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/chat/completions": _post("Create chat completion", "ChatRequest", _ref("OpenAIObject"),
                                          tag="OpenAI"),
            "/v1/completions": _post("Create completion", "CompletionRequest", _ref("OpenAIObject"), tag="OpenAI"),
            "/v1/embeddings": _post("Create embeddings", "EmbeddingRequest", _ref("OpenAIObject"), tag="OpenAI",
                                    stream=False),
            "/v1/moderations": _post("Create moderation", "ModerationRequest", _ref("OpenAIObject"), tag="OpenAI",
                                     stream=False),
            "/v1/responses": _post("Create response", "ResponsesRequest", _ref("OpenAIObject"), tag="OpenAI"),
            "/v1/responses/{response_id}": responses_item,
            "/v1/messages": _post("Create message", "MessagesRequest", _ref("AnthropicMessage"), tag="Anthropic",
                                  anthropic=True),
            "/v1/messages/count_tokens": _post("Count tokens", "CountTokensRequest", _ref("CountTokensResponse"),
                                               tag="Anthropic", anthropic=True, stream=False),
            "/v1/models": {"get": _get("List models", _ref("ModelList"), tag="OpenAI")},
            "/v1/models/{model}": {"parameters": [_id_param("model", "A model group name (may contain '/').")],
                                   "get": _get("Retrieve model", _ref("Model"), tag="OpenAI")},
            "/healthz": {"get": {**_get("Liveness", _ref("Health"), tag="Operations", errors=False),
                                 "security": []}},
            "/readyz": {"get": {**_get("Readiness", _ref("Health"), tag="Operations", errors=False),
                                "security": []}},
            "/metrics": {"get": {**_get("Prometheus metrics", {"type": "string"}, tag="Operations", errors=False,
                                        content_type="text/plain"), "security": []}},
            "/admin/admission": {"get": _get("Admission state (admin key)", {"type": "object"}, tag="Operations")},
            **_status_paths(),
            "/openapi.json": {"get": {**_get("This document", {"type": "object"}, tag="Operations", errors=False),
                                      "security": []}},
        },
    }


def _status_paths() -> dict[str, Any]:
    """The status page (public, Statuspage v2 shapes) and incident management (admin key)."""
    public: dict[str, Any] = {"security": []}
    doc: dict[str, Any] = {
        "/status": {"get": {**_get("Status page (HTML)", {"type": "string"}, tag="Status", errors=False,
                                   content_type="text/html"), **public}},
        "/status/history.atom": {"get": {**_get("Incidents (Atom feed)", {"type": "string"}, tag="Status",
                                                errors=False, content_type="application/atom+xml"), **public}},
        "/admin/slo": {"get": _get("SLOs: error budgets and burn rates (admin key)", {"type": "object"},
                                   tag="Status")},
        "/admin/incidents": {
            "get": _get("Incidents of the last 90 days (admin key)", {"type": "object"}, tag="Status"),
            "post": {**_get("Open an incident (admin key): name, body, status, impact, components",
                            {"type": "object"}, tag="Status"),
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["name", "body"]}}}}}},
        "/admin/incidents/{incident_id}/updates": {
            "parameters": [_id_param("incident_id", "An incident id (inc_...).")],
            "post": {**_get("Post an incident update (admin key): status, body", {"type": "object"}, tag="Status"),
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["status", "body"]}}}}}},
    }
    for name in ("summary", "status", "components", "incidents"):
        doc[f"/api/v2/{name}.json"] = {"get": {**_get(f"Statuspage v2 {name}", {"type": "object"}, tag="Status",
                                                      errors=False), **public}}
    return doc
