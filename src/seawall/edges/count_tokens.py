"""``POST /v1/messages/count_tokens`` (Anthropic dialect): answered by the gateway itself.

Authenticated and checked against the key's models like any request, then answered from the
estimate in :mod:`seawall.providers.token_count`: no upstream call, no quota or admission (it
costs no generation, and a client that cannot count cannot decide to compact). The ledger does
not record it for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from seawall.core.errors import ModelNotFound
from seawall.core.types import Request, Response
from seawall.providers.token_count import estimate_input_tokens, parse_count_tokens

if TYPE_CHECKING:
    from seawall.config.stack import Runtime

__all__ = ["CountTokensEndpoint"]


class CountTokensEndpoint:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, request: Request) -> Response:
        principal = self.runtime.auth.authenticate(request.headers, request.client_addr)
        body = parse_count_tokens(request.raw)
        model = body["model"]
        router = self.runtime.router
        if router is None or model not in router.groups or not principal.may_use(model):
            raise ModelNotFound(f"model: {model[:200]}", param="model")
        tokens = estimate_input_tokens(body)
        return Response(200, msgspec.json.encode({"input_tokens": tokens}),
                        headers=[("content-type", "application/json")])
