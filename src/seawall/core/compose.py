"""The policy protocol and ``compose()``.

A *handler* turns a request into a response. A *policy* is an async callable
``(request, next_handler) -> response`` that may answer itself (reject), call ``next_handler`` once
or several times (retry), or wrap what comes back. ``compose([a, b, c], terminal)`` builds
``a(req, b(req, c(req, terminal)))``: the first policy in the list sees the request first and the
response last. The default order and the reason for each position live in
:mod:`seawall.config.stack`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from seawall.core.types import Request, Response

__all__ = ["Handler", "Policy", "compose"]

Handler = Callable[[Request], Awaitable[Response]]
Policy = Callable[[Request, Handler], Awaitable[Response]]


def _bind(policy: Policy, next_handler: Handler) -> Handler:
    async def handler(request: Request) -> Response:
        return await policy(request, next_handler)

    handler.__qualname__ = f"bound({getattr(policy, '__qualname__', type(policy).__name__)})"
    return handler


def compose(policies: Sequence[Policy], terminal: Handler) -> Handler:
    """Chain ``policies`` around ``terminal``; the first policy is the outermost."""
    handler = terminal
    for policy in reversed(policies):
        handler = _bind(policy, handler)
    return handler
