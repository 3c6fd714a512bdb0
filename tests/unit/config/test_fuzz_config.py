"""Property tests of config loading: whatever the file holds (any text, any YAML, any value in any
field of the schema), loading gives a config or a :class:`ConfigError` listing the problems, never
another exception (which ``seawall run`` and ``check-config`` would print as a stack trace)."""

from __future__ import annotations

import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from seawall.config.load import ConfigError, load_config, parse_config
from seawall.config.schema import Config

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
           | st.sampled_from(["", "-1", "0", "1e9", "nan", "http://x", "redis://h:1/0", "postgresql://u@h/db", "A_B"]))
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=8)
VALID = {"models": [{"name": "m", "deployments": [{"base_url": "http://127.0.0.1:9/v1"}]}]}


def values_for(annotation: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of a field's type (most of the time) or of any other type: every validator is reached."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        typed = sections(annotation, depth + 1) if depth < 3 else st.just({})
    elif origin is list:
        typed = st.lists(values_for(args[0], depth + 1), max_size=2)
    elif origin is dict:
        typed = st.dictionaries(st.text(max_size=6), values_for(args[1], depth + 1), max_size=2)
    elif origin in (typing.Union, types.UnionType):
        typed = st.one_of([values_for(a, depth) for a in args])
    elif origin is typing.Literal:
        typed = st.sampled_from(args)
    elif annotation is bool:
        typed = st.booleans()
    elif annotation is int:
        typed = st.integers(-5, 10**7) | st.integers()
    elif annotation is float:
        typed = st.floats(-1, 10**6) | st.floats()
    elif annotation is str:
        typed = SCALARS.filter(lambda v: isinstance(v, str))
    else:
        typed = ANY
    return typed | ANY if depth else typed


def sections(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={name: st.deferred(lambda f=field: values_for(f.annotation, depth))
                                               for name, field in model.model_fields.items()})


def check(data: Any) -> None:
    try:
        parse_config(data, environ={"A_B": "x", "SEAWALL_REDIS_URL": "redis://h:1/0"})
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p for p in err.problems)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(sections(Config))
def test_any_value_in_any_field_is_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    check({**VALID, **data})


@settings(max_examples=100)
@given(ANY)
def test_any_document_is_a_config_or_a_config_error(data: Any) -> None:
    check(data)


@settings(max_examples=150)
@given(st.text(max_size=200) | st.builds(lambda d: yaml.safe_dump(d), ANY))
def test_any_file_is_a_config_or_a_config_error(text: str) -> None:
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as f:
        f.write(text.encode("utf-8", "surrogatepass"))  # lone surrogates: a file that is not UTF-8
    path = Path(f.name)
    try:
        try:
            load_config(path, environ={})
        except ConfigError as err:
            assert err.problems
    finally:
        path.unlink(missing_ok=True)
