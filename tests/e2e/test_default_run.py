"""The embedded default (`make run`, no config): a newcomer's first session with both official SDKs.

The gateway starts with no configuration in an empty directory, prints its demo keys, and serves
the built-in mock; chat, tool calls, structured outputs, the Responses API with its streaming
helper, legacy completions, moderations, and the anthropic SDK's messages, tool use and
count_tokens must all complete.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.e2e.harness import PYTHON, free_port

pytestmark = pytest.mark.e2e

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}


class City(BaseModel):
    name: str
    population: int


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    workdir = tmp_path_factory.mktemp("default-run")
    port = free_port()
    log = workdir / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([PYTHON, "-m", "seawall", "run", "--port", str(port)], cwd=workdir, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "SEAWALL_LOG_LEVEL": "warning"})
    try:
        key = None
        deadline = time.monotonic() + 20
        while key is None and time.monotonic() < deadline:
            assert proc.poll() is None, Path(log).read_text()
            match = re.search(r"^\s+enterprise\s+\S+\s+(\S+)$", log.read_text(), re.M)
            key = match.group(1) if match else None
            time.sleep(0.05)
        assert key is not None, log.read_text()
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url, key
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_openai_sdk_session(default_run):
    url, key = default_run
    c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)
    assert c.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "Hi"}]).choices
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    call = c.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "Weather?"}],
                                     tools=tools).choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "mock"}
    parsed = c.chat.completions.parse(model="sim-small", messages=[{"role": "user", "content": "A city"}],
                                      response_format=City).choices[0].message.parsed
    assert isinstance(parsed, City)
    first = c.responses.create(model="sim-small", input="Hi", instructions="Be brief.")
    with c.responses.stream(model="sim-small", input="More", previous_response_id=first.id) as stream:
        assert stream.get_final_response().output_text
    assert isinstance(c.responses.parse(model="sim-small", input="A city", text_format=City).output_parsed, City)
    assert c.completions.create(model="sim-small", prompt="Once upon", max_tokens=3).choices[0].text
    assert c.moderations.create(input="I will attack").results[0].flagged
    assert c.models.retrieve("sim-small").id == "sim-small"


def test_the_anthropic_sdk_session(default_run):
    url, key = default_run
    claude = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=10)
    hello = [{"role": "user", "content": "Hello"}]
    assert claude.messages.create(model="sim-small", max_tokens=20, messages=hello).content[0].text
    with claude.messages.stream(model="sim-small", max_tokens=20, messages=hello) as stream:
        assert stream.get_final_text()
    used = claude.messages.create(model="sim-small", max_tokens=50, messages=hello,
                                  tools=[{"name": "get_weather", "input_schema": WEATHER}])
    assert used.stop_reason == "tool_use" and used.content[0].input == {"city": "mock"}
    assert claude.messages.count_tokens(model="sim-small", messages=hello).input_tokens > 0
