"""``/v1/responses``: OpenAI's Responses API, served through the gateway's chat path.

A Responses request becomes a chat completions request (:mod:`seawall.providers.responses`) before
the policy stack sees it, so it goes through exactly what chat goes through: auth, quota,
admission, routing with failover and every deployment kind (OpenAI-compatible as is, Anthropic
through the chat translation), and the ledger (route ``responses``). The answer is translated back:
a ``response`` object, or the typed event stream built by
:class:`~seawall.providers.responses_stream.ChatToResponsesStream`.

This edge owns the I/O the translation needs: response ids, timestamps and the response store.
With ``store`` (OpenAI's default: true) a completed response and the conversation behind it are
kept in the configured database, before the client sees the end of it, so a follow-up
``previous_response_id`` can never race the write. A store that is down does not fail the answer
(it is logged; the response just cannot be continued). ``previous_response_id`` needs the caller's
tenant before the stack runs, so such a request is authenticated here first (from the in-memory
key snapshot, as the auth policy does); responses are visible only to the tenant that made them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from seawall.core.errors import GatewayError, InvalidRequest, PayloadTooLarge, UpstreamError
from seawall.core.types import Operation, Payload, Request, Response
from seawall.edges.stores.stored_response import ResponseStore, StoredResponse
from seawall.providers import openai
from seawall.providers.responses import (
    ResponsesCall,
    chat_request,
    conversation_after,
    deleted_body,
    parse_responses,
    response_body,
)
from seawall.providers.responses_stream import ChatToResponsesStream
from seawall.providers.sse import EventSplitter

if TYPE_CHECKING:
    from seawall.config.stack import Runtime

__all__ = ["ResponsesEndpoint"]

log = logging.getLogger("seawall.responses")

_encode = msgspec.json.encode
_JSON_HEADERS = [("content-type", "application/json")]


class StoreUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "store_unavailable"


class ResponsesEndpoint:
    """``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}`` for one runtime."""

    def __init__(self, runtime: Runtime, store: ResponseStore) -> None:
        self.runtime = runtime
        self.store = store
        self.retention_s = runtime.config.store.responses_retention_s

    # -- create --------------------------------------------------------------------------------
    async def create(self, outer: Request) -> Response:
        try:
            call = parse_responses(outer.raw)
            history: list[dict[str, Any]] = []
            if call.previous_response_id is not None:
                tenant = self.runtime.auth.authenticate(outer.headers, outer.client_addr).tenant
                history = await self._history(call.previous_response_id, tenant)
            chat, turn = chat_request(call, history)
            raw = _encode(chat)
            limit = self.runtime.config.server.max_body_bytes
            if len(raw) > limit:  # the bound a client sending the whole history itself would meet
                raise PayloadTooLarge(f"The conversation continued from 'previous_response_id' is larger than the"
                                      f" limit of {limit} bytes; start a new one or send less.",
                                      param="previous_response_id")
        except GatewayError as err:
            return await self._refuse(outer, err)
        inner = Request(id=outer.id, api="openai", operation=Operation.RESPONSES, raw=raw,
                        headers=outer.headers, client_addr=outer.client_addr, received_at=outer.received_at,
                        deadline=outer.deadline, parse=openai.parse_chat)
        clock = self.runtime.clock
        response_id = "resp_" + self.runtime.rng.token_hex(24)
        created_at = int(clock.wall())
        response = await self.runtime.handler(inner)
        context = [*history, *turn]
        tenant = inner.principal.tenant
        if response.stream is not None:
            translator = ChatToResponsesStream(call, id=response_id, created_at=created_at,
                                               now=lambda: int(clock.wall()))
            response.stream = self._events(response.stream, translator, call, context, tenant)
            return response
        chat_obj = _chat_object(response.body)
        body = response_body(call, chat_obj, id=response_id, created_at=created_at,
                             completed_at=int(clock.wall()))
        await self._keep(call, body, context, tenant)
        out = Response(response.status, _encode(body), headers=[h for h in response.headers
                                                               if h[0] != "content-type"] + _JSON_HEADERS,
                       usage=response.usage, deployment=response.deployment)
        return out

    async def _refuse(self, outer: Request, err: GatewayError) -> Response:
        """Send a request refused before translation through the stack anyway, as a body that fails
        to parse: the stack refuses it where it refuses a malformed chat body (after auth, so a bad
        key is still a 401), and the observe policy counts it and writes its ledger row."""

        def parse(raw: bytes) -> Payload:
            raise err

        refused = Request(id=outer.id, api="openai", operation=Operation.RESPONSES, raw=outer.raw,
                          headers=outer.headers, client_addr=outer.client_addr, received_at=outer.received_at,
                          deadline=outer.deadline, parse=parse)
        await self.runtime.handler(refused)
        raise err  # every stack reads the payload (routing needs the model); this is a backstop

    async def _events(self, inner: AsyncIterator[bytes], translator: ChatToResponsesStream, call: ResponsesCall,
                      context: list[dict[str, Any]], tenant: str) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        try:
            async for data in inner:
                for framed in splitter.feed(data):
                    out = translator.feed(framed)
                    if translator.done and translator.response is not None:
                        await self._keep(call, translator.response, context, tenant)
                    if out:
                        yield b"".join(out)
                    if translator.done:
                        return
            ended = UpstreamError("The upstream ended the stream early.", reason="upstream_truncated")
            yield b"".join(translator.fail(ended))
        except GatewayError as err:  # already recorded by the observe policy, which sits inside
            yield b"".join(translator.fail(err))
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- the store -----------------------------------------------------------------------------
    async def _keep(self, call: ResponsesCall, body: dict[str, Any], context: list[dict[str, Any]],
                    tenant: str) -> None:
        if not call.store:
            return
        record = StoredResponse(body["id"], tenant, float(body["created_at"]), _encode(body),
                                _encode(conversation_after(context, body["output"])))
        try:
            await self.store.put(record)
        except Exception as exc:  # the answer stands; only its continuation is lost
            log.warning("response %s not stored: %s", body["id"], exc)

    async def _load(self, response_id: str, tenant: str) -> StoredResponse | None:
        try:
            return await self.store.get(response_id, tenant, self.runtime.clock.wall() - self.retention_s)
        except Exception as exc:
            log.warning("response store read failed: %s", exc)
            raise StoreUnavailable("The response store is unavailable; try again shortly.",
                                   reason="store_unavailable", retry_after_s=1.0) from None

    async def _history(self, response_id: str, tenant: str) -> list[dict[str, Any]]:
        stored = await self._load(response_id, tenant)
        if stored is None:
            raise InvalidRequest(f"Previous response with id '{response_id}' not found.",
                                 param="previous_response_id", code="previous_response_not_found")
        messages: list[dict[str, Any]] = msgspec.json.decode(stored.conversation)
        return messages

    # -- retrieve and delete -------------------------------------------------------------------
    async def retrieve(self, response_id: str, headers: dict[str, str], client_addr: str) -> bytes:
        tenant = self.runtime.auth.authenticate(headers, client_addr).tenant
        stored = await self._load(response_id, tenant)
        if stored is None:
            raise _not_found(response_id)
        return stored.body

    async def delete(self, response_id: str, headers: dict[str, str], client_addr: str) -> bytes:
        tenant = self.runtime.auth.authenticate(headers, client_addr).tenant
        try:
            deleted = await self.store.delete(response_id, tenant)
        except Exception as exc:
            log.warning("response store delete failed: %s", exc)
            raise StoreUnavailable("The response store is unavailable; try again shortly.",
                                   reason="store_unavailable", retry_after_s=1.0) from None
        if not deleted:
            raise _not_found(response_id)
        return deleted_body(response_id)


def _not_found(response_id: str) -> InvalidRequest:
    return InvalidRequest(f"Response with id '{response_id[:128]}' not found.", status=404,
                          param="response_id", code="response_not_found")


def _chat_object(body: bytes) -> dict[str, Any]:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise UpstreamError("The upstream sent a malformed chat completion.", reason="upstream_malformed")
    return obj
