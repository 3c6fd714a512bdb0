"""The mock's answers: tool calls, structured outputs, stop sequences and limits, decided purely."""

import json

import pytest
from jsonschema import Draft202012Validator

from seawall.mock.answer import JSON_PIECE_CHARS, answer_for, minimal_instance

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
           "required": ["city", "days"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
         {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
HI = [{"role": "user", "content": "Hi"}]


def answer(body, anthropic=False, text_tokens=5, max_tokens=None):
    return answer_for(body, anthropic=anthropic, text_tokens=text_tokens, max_tokens=max_tokens, call_id="call_1")


SCHEMAS = [
    WEATHER,
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "minLength": 6},
                                               "minItems": 2}}, "required": ["tags"]},
    {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}, "n": {"type": "number", "exclusiveMinimum": 3,
                                                                        "multipleOf": 0.5},
                                      "when": {"type": "string", "format": "date-time"},
                                      "maybe": {"type": ["null", "boolean"]}, "fixed": {"const": 7}}},
    {"$defs": {"step": {"type": "object", "properties": {"explanation": {"type": "string"},
                                                         "output": {"type": "string"}},
                        "required": ["explanation", "output"], "additionalProperties": False}},
     "type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1},
                                      "final_answer": {"type": "string", "maxLength": 2}},
     "required": ["steps", "final_answer"], "additionalProperties": False},
    {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 10, "maximum": 20}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
               {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_minimal_instances_validate_against_their_schema(schema):
    instance = minimal_instance(schema)
    assert list(Draft202012Validator(schema).iter_errors(instance)) == [], instance


def test_an_offered_tool_is_called_with_valid_arguments_and_a_named_one_wins():
    a = answer({"messages": HI, "tools": TOOLS, "tool_choice": {"type": "function",
                                                                "function": {"name": "get_weather"}}})
    assert a.tool is not None and a.tool.name == "get_weather" and a.finish_reason == "tool_calls"
    assert json.loads(a.text) == {"city": "mock", "days": 1} and a.tool.arguments == a.text
    assert all(len(p) <= JSON_PIECE_CHARS for p in a.pieces)
    assert answer({"messages": HI, "tools": TOOLS}).tool.name == "get_time", "auto: the first tool"


def test_after_a_tool_result_auto_answers_in_text_so_agent_loops_end():
    turn = [*HI, {"role": "assistant", "tool_calls": []}, {"role": "tool", "tool_call_id": "c", "content": "1"}]
    assert answer({"messages": turn, "tools": TOOLS}).tool is None
    assert answer({"messages": turn, "tools": TOOLS, "tool_choice": "required"}).tool is not None
    assert answer({"messages": HI, "tools": TOOLS, "tool_choice": "none"}).tool is None


def test_anthropic_tool_choice_and_tool_results():
    tools = [{"name": "get_weather", "input_schema": WEATHER}]
    assert answer({"messages": HI, "tools": tools}, anthropic=True).tool.name == "get_weather"
    assert answer({"messages": HI, "tools": tools, "tool_choice": {"type": "none"}}, anthropic=True).tool is None
    result = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "1"}]}]
    assert answer({"messages": result, "tools": tools}, anthropic=True).tool is None
    assert answer({"messages": result, "tools": tools, "tool_choice": {"type": "any"}}, anthropic=True).tool


def test_json_modes_give_valid_json():
    text = answer({"response_format": {"type": "json_object"}}).text
    assert json.loads(text) == {"answer": "tok0 tok1 tok2 tok3 tok4"}
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER, "strict": True}}
    assert json.loads(answer({"response_format": fmt}).text) == {"city": "mock", "days": 1}


def test_stop_cuts_before_the_first_match_and_max_tokens_cuts_with_length():
    a = answer({"stop": ["tok3", " tok2"]})
    assert (a.text, a.finish_reason, a.stop_sequence) == ("tok0 tok1", "stop", " tok2")
    assert answer({"stop_sequences": ["tok1"]}, anthropic=True).text == "tok0 "
    a = answer({}, max_tokens=2)
    assert (a.text, a.finish_reason) == ("tok0 tok1", "length")
    assert answer({"stop": "zzz"}).text == "tok0 tok1 tok2 tok3 tok4"
