"""The official openai SDK against a real gateway process and a real mock upstream on loopback."""

import httpx
import openai
import pytest

from tests.e2e.harness import Gateway

MSG = [{"role": "user", "content": "Hello"}]


def client(gw: Gateway, tier: str = "enterprise", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys[tier], max_retries=0, timeout=10, **kw)


def test_sync_chat_non_streaming(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(model="chat", messages=MSG,
                                                                    max_tokens=5)
    completion = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_sync_streaming_with_usage(gateway):
    chunks = list(client(gateway).chat.completions.create(
        model="chat", messages=MSG, stream=True, max_tokens=4, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_streaming_without_usage_hides_the_usage_chunk(gateway):
    chunks = list(client(gateway).chat.completions.create(model="chat", messages=MSG, stream=True,
                                                          max_tokens=3))
    assert all(c.choices for c in chunks), "the gateway asked upstream for usage; the client did not"
    assert all(c.usage is None for c in chunks)


async def test_async_chat_and_stream(gateway):
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.keys["free"],
                                  max_retries=0, timeout=10) as c:
        completion = await c.chat.completions.create(model="chat", messages=MSG, max_tokens=2)
        assert completion.choices[0].message.content == "tok0 tok1"
        stream = await c.chat.completions.create(model="chat", messages=MSG, max_tokens=2, stream=True)
        texts = [ch.choices[0].delta.content async for ch in stream if ch.choices]
        assert "".join(t or "" for t in texts) == "tok0 tok1"


def test_model_rewrite_to_upstream_name(gateway):
    completion = client(gateway).chat.completions.create(model="chat-renamed", messages=MSG, max_tokens=1)
    assert completion.model == "upstream-name"


def test_embeddings(gateway):
    result = client(gateway).embeddings.create(model="embed", input=["a", "b"], dimensions=4)
    assert len(result.data) == 2 and len(result.data[0].embedding) == 4


def test_models_lists_only_allowed(gateway):
    key = gateway.create_key("narrow", "free", models=["embed"])["key"]
    from tests.e2e.harness import wait_for_key

    wait_for_key(gateway.url, key)
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    assert [m.id for m in c.models.list()] == ["embed"]
    with pytest.raises(openai.PermissionDeniedError) as exc:
        c.chat.completions.create(model="chat", messages=MSG)
    assert exc.value.code == "model_not_allowed"
    assert sorted(m.id for m in client(gateway).models.list()) == ["chat", "chat-renamed", "embed"]


def test_error_mapping(gateway):
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sw-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        bad.chat.completions.create(model="chat", messages=MSG)
    assert auth.value.code == "invalid_api_key"
    c = client(gateway)
    with pytest.raises(openai.NotFoundError) as nf:
        c.chat.completions.create(model="no-such-model", messages=MSG)
    assert nf.value.code == "model_not_found" and nf.value.param == "model"
    with pytest.raises(openai.BadRequestError) as br:
        c.chat.completions.create(model="chat", messages=MSG, max_tokens=-1)
    assert br.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as kind:
        c.chat.completions.create(model="embed", messages=MSG)
    assert kind.value.code == "wrong_model_kind"


def test_upstream_500_is_502(gateway):
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway).chat.completions.create(model="chat", messages=MSG,
                                                extra_body={"mock": {"fault": "error"}})
    assert exc.value.status_code == 502
    assert exc.value.response.headers["x-seawall-reason"] == "upstream_500"


def test_upstream_429_is_503_with_retry_after(gateway):
    with pytest.raises(openai.InternalServerError) as exc:
        client(gateway).chat.completions.create(model="chat", messages=MSG,
                                                extra_body={"mock": {"fault": "429"}})
    headers = exc.value.response.headers
    assert exc.value.status_code == 503
    assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) >= 1
    # The upstream said 429 with a retry hint: the admission requeue (and the SDK's own retries)
    # within the hint are held by the deployment's pacer instead of being sent ("paced").
    assert headers["x-seawall-reason"] in ("upstream_429", "paced")


def test_stream_failure_after_start_raises_in_the_sdk(gateway):
    stream = client(gateway).chat.completions.create(
        model="chat", messages=MSG, stream=True, max_tokens=12, extra_body={"mock": {"fault": "reset"}})
    got = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            got.append(chunk)
    assert got, "some chunks arrived before the failure"
    assert "mid-stream" in str(exc.value) or "stream" in str(exc.value)


def test_stall_mid_stream_hits_read_timeout_and_ends_with_error(gateway):
    # mock-a has read_s = 2: a 3 s stall must end the stream with an error event, not hang.
    stream = client(gateway).chat.completions.create(
        model="chat", messages=MSG, stream=True, max_tokens=12,
        extra_body={"mock": {"fault": "stall"}})
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_retry_after_is_honoured_by_sdk_defaults(gateway):
    # The SDK with its default retries sees 503 + retry-after and retries; here every attempt fails,
    # so it must give up after max_retries and surface 503 (no infinite loop, no hang).
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.keys["enterprise"], max_retries=1,
                      timeout=10)
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="chat", messages=MSG, extra_body={"mock": {"fault": "429"}})


def test_request_id_is_propagated(gateway):
    r = httpx.post(gateway.url + "/v1/chat/completions",
                   headers={"authorization": f"Bearer {gateway.keys['enterprise']}",
                            "x-request-id": "my-trace-123"},
                   json={"model": "chat", "messages": MSG, "max_tokens": 1}, timeout=10)
    assert r.status_code == 200 and r.headers["x-request-id"] == "my-trace-123"
