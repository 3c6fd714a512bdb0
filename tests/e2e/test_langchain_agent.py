"""A ``langchain-openai`` tool-calling agent loop against the gateway and the built-in mock: the model
calls the tool, the loop runs it and sends the result back, the model answers (issue 12)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Gateway

langchain_openai = pytest.importorskip("langchain_openai")
messages_mod = pytest.importorskip("langchain_core.messages")
tools_mod = pytest.importorskip("langchain_core.tools")

pytestmark = pytest.mark.e2e


@tools_mod.tool
def get_weather(city: str) -> str:
    """The weather now in ``city``."""
    return f"18C and clear in {city}"


@pytest.mark.parametrize(("model", "use_responses_api"), [("chat", False), ("claude", False), ("chat", True)])
def test_a_tool_calling_agent_loop_completes(front_door: Gateway, model: str, use_responses_api: bool):
    llm = langchain_openai.ChatOpenAI(model=model, base_url=front_door.url + "/v1",
                                      api_key=front_door.keys["enterprise"], max_retries=0, timeout=10,
                                      use_responses_api=use_responses_api)
    agent = llm.bind_tools([get_weather])
    history: list = [messages_mod.HumanMessage("What is the weather in Paris?")]
    calls = 0
    for _ in range(4):  # bounded: a loop that never ends is the failure this test is for
        reply = agent.invoke(history)
        history.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            calls += 1
            history.append(messages_mod.ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    assert calls == 1 and history[-1].text
    assert not history[-1].tool_calls
