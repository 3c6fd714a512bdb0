import pytest

from seawall.core.compose import compose
from seawall.core.errors import GatewayError
from seawall.core.types import Response
from seawall.testing import make_request


async def test_first_policy_is_outermost_and_sees_response_last():
    trace: list[str] = []

    def policy(name):
        async def p(request, next_handler):
            trace.append(f"{name}>")
            response = await next_handler(request)
            trace.append(f"<{name}")
            return response

        return p

    async def terminal(request):
        trace.append("terminal")
        return Response(200, b"ok")

    handler = compose([policy("a"), policy("b"), policy("c")], terminal)
    response = await handler(make_request())
    assert response.body == b"ok"
    assert trace == ["a>", "b>", "c>", "terminal", "<c", "<b", "<a"]


async def test_policy_can_short_circuit_and_errors_propagate_outward():
    seen = []

    async def outer(request, next_handler):
        try:
            return await next_handler(request)
        except GatewayError as exc:
            seen.append(exc.status)
            raise

    async def reject(request, next_handler):
        raise GatewayError("no", status=429)

    async def terminal(request):  # pragma: no cover - must not be reached
        raise AssertionError("terminal reached")

    handler = compose([outer, reject], terminal)
    with pytest.raises(GatewayError):
        await handler(make_request())
    assert seen == [429]


async def test_policy_may_call_next_more_than_once():
    calls = 0

    async def retry_once(request, next_handler):
        try:
            return await next_handler(request)
        except GatewayError:
            return await next_handler(request)

    async def flaky(request):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise GatewayError("first fails", status=502)
        return Response(200)

    assert (await compose([retry_once], flaky)(make_request())).status == 200
    assert calls == 2


async def test_empty_stack_is_the_terminal():
    async def terminal(request):
        return Response(204)

    assert (await compose([], terminal)(make_request())).status == 204
