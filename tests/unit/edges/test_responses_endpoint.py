"""The Responses edge on fakes: what it stores, when, for whom, and the bound on continued conversations."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
import pytest

from seawall.core.errors import InvalidRequest, PayloadTooLarge
from seawall.core.types import Criticality, Operation, Principal, Request, Response
from seawall.edges.responses import ResponsesEndpoint, StoreUnavailable
from seawall.edges.stores.stored_response import StoredResponse
from seawall.testing import FakeClock

PRINCIPAL = Principal("k1", "acme", "enterprise", Criticality.CRITICAL)
CHAT = {"model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "Hello there"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


class MemoryStore:
    def __init__(self, fail: bool = False) -> None:
        self.rows: dict[str, StoredResponse] = {}
        self.fail = fail

    async def put(self, record: StoredResponse) -> None:
        if self.fail:
            raise OSError("disk gone")
        self.rows[record.response_id] = record

    async def get(self, response_id: str, tenant: str, since_s: float) -> StoredResponse | None:
        if self.fail:
            raise OSError("disk gone")
        row = self.rows.get(response_id)
        return row if row is not None and row.tenant == tenant and row.created_at >= since_s else None


def endpoint(store: MemoryStore, max_body_bytes: int = 1 << 20) -> tuple[ResponsesEndpoint, list[Request]]:
    seen: list[Request] = []
    attempts: list[Request] = []

    async def handler(request: Request) -> Response:  # as the stack does: auth, then routing reads the payload
        request.ctx.principal = PRINCIPAL
        attempts.append(request)
        request.payload  # noqa: B018 - raises for a request refused before translation
        seen.append(request)
        return Response(200, msgspec.json.encode(CHAT), headers=[("content-type", "application/json")])

    runtime = SimpleNamespace(
        config=SimpleNamespace(store=SimpleNamespace(responses_retention_s=3600.0),
                               server=SimpleNamespace(max_body_bytes=max_body_bytes)),
        auth=SimpleNamespace(authenticate=lambda headers, addr: PRINCIPAL), clock=FakeClock(),
        rng=SimpleNamespace(token_hex=lambda n: "ab" * n), handler=handler)
    ep = ResponsesEndpoint(runtime, store)  # type: ignore[arg-type]
    ep.attempts = attempts  # type: ignore[attr-defined]
    return ep, seen


def request(**body) -> Request:
    raw = json.dumps({"model": "m", "input": "Hi", **body}).encode()
    return Request(id="req_1", api="openai", operation=Operation.RESPONSES, raw=raw, headers={}, client_addr="x",
                   received_at=0.0, deadline=60.0)


async def test_the_stack_sees_a_chat_request_and_the_answer_is_stored_for_its_tenant():
    store = MemoryStore()
    ep, seen = endpoint(store)
    answer = json.loads((await ep.create(request(instructions="Be brief."))).body)
    assert seen[0].operation is Operation.RESPONSES and seen[0].payload.body["messages"][0]["role"] == "system"
    row = store.rows[answer["id"]]
    assert row.tenant == "acme" and json.loads(row.body) == answer
    assert json.loads(row.conversation) == [{"role": "user", "content": "Hi"},
                                            {"role": "assistant", "content": "Hello there"}]
    await ep.create(request(previous_response_id=answer["id"], input="And?"))
    assert [m["content"] for m in seen[1].payload.body["messages"]] == ["Hi", "Hello there", "And?"]


async def test_store_false_keeps_nothing_and_a_failed_write_keeps_the_answer():
    store = MemoryStore()
    ep, _ = endpoint(store)
    await ep.create(request(store=False))
    assert store.rows == {}
    broken, _ = endpoint(MemoryStore(fail=True))
    assert json.loads((await broken.create(request())).body)["status"] == "completed"
    with pytest.raises(StoreUnavailable):
        await broken.create(request(previous_response_id="resp_x"))


async def test_unknown_previous_ids_and_oversized_conversations_are_refused():
    store = MemoryStore()
    ep, seen = endpoint(store, max_body_bytes=2000)
    with pytest.raises(InvalidRequest) as info:
        await ep.create(request(previous_response_id="resp_nope"))
    assert info.value.code == "previous_response_not_found"
    history = [{"role": "user", "content": "x" * 3000}]
    store.rows["resp_big"] = StoredResponse("resp_big", "acme", 1_700_000_000.0, b"{}", msgspec.json.encode(history))
    with pytest.raises(PayloadTooLarge) as too_big:
        await ep.create(request(previous_response_id="resp_big"))
    assert too_big.value.param == "previous_response_id" and not seen
    # Both went through the stack (observed and in the ledger like a malformed chat body), refused there.
    assert [r.operation for r in ep.attempts] == [Operation.RESPONSES] * 2  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequest):
        ep.attempts[0].payload  # type: ignore[attr-defined]  # noqa: B018
