import json

import pytest

from seawall.core.errors import InvalidRequest
from seawall.providers import completions


def parse(**body):
    return completions.parse_completions(json.dumps({"model": "m", "prompt": "Hi", **body}).encode())


def test_the_token_budget_counts_the_default_n_best_of_and_every_prompt():
    assert parse().max_tokens == 16
    assert parse(max_tokens=10, n=2).max_tokens == 20
    assert parse(max_tokens=10, n=2, best_of=3).max_tokens == 30
    assert parse(max_tokens=10, prompt=["a", "b", "c"]).max_tokens == 30
    assert parse(max_tokens=10, prompt=[1, 2, 3]).max_tokens == 10, "one prompt of tokens"
    assert parse(stream=True, stream_options={"include_usage": True}).include_usage


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": None}, "prompt"), ({"prompt": []}, "prompt"), ({"prompt": [[1], []]}, "prompt"),
    ({"prompt": [True]}, "prompt"), ({"model": ""}, "model"), ({"stream": "yes"}, "stream"),
    ({"n": 0}, "n"), ({"stream_options": {}}, "stream_options"),
])
def test_bad_bodies_name_the_field(body, param):
    with pytest.raises(InvalidRequest) as info:
        parse(**body)
    assert info.value.param == param


def test_the_mocks_bodies_are_byte_stable():
    assert completions.chunk(id="c", created=1, model="m", text="a") == (
        b'{"id":"c","object":"text_completion","created":1,"model":"m","system_fingerprint":"fp_seawall",'
        b'"choices":[{"index":0,"text":"a","logprobs":null,"finish_reason":null}],"usage":null}')
