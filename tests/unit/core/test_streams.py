import pytest

from seawall.core.streams import after_stream


async def _gen(items, fail=False):
    for item in items:
        yield item
    if fail:
        raise RuntimeError("broke")


async def test_on_end_sees_a_clean_finish():
    ends = []
    out = [x async for x in after_stream(_gen([b"a", b"b"]), ends.append)]
    assert out == [b"a", b"b"] and ends == [True]


async def test_on_end_sees_a_failure_and_awaits_async_callbacks():
    ends = []

    async def on_end(finished):
        ends.append(finished)

    with pytest.raises(RuntimeError):
        async for _ in after_stream(_gen([b"a"], fail=True), on_end):
            pass
    assert ends == [False]


async def test_on_end_runs_when_the_consumer_stops_early():
    ends = []
    stream = after_stream(_gen([b"a", b"b", b"c"]), ends.append)
    assert await stream.__anext__() == b"a"
    await stream.aclose()
    assert ends == [False]
