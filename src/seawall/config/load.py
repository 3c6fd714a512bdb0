"""Loading a config file and turning validation failures into one line per problem."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from seawall.config.schema import Config

__all__ = ["DEFAULT_CONFIG", "ConfigError", "load_config", "parse_config", "validation_problems"]


class ConfigError(Exception):
    """Every problem found in a config file, each as ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


DEFAULT_CONFIG: dict[str, Any] = {
    "tenants": [
        {"name": "demo-enterprise", "tier": "enterprise"},
        {"name": "demo-api", "tier": "api"},
        {"name": "demo-plus", "tier": "plus"},
        {"name": "demo-free", "tier": "free"},
    ],
    "models": [
        {"name": "sim-small", "deployments": [{"name": "sim-small-local", "provider": "mock"}]},
        {
            "name": "sim-embed",
            "kind": "embeddings",
            "deployments": [{"name": "sim-embed-local", "provider": "mock"}],
        },
        {
            "name": "sim-moderation",
            "kind": "moderation",
            "deployments": [{"name": "sim-moderation-local", "provider": "mock"}],
        },
    ],
}


def _path(loc: tuple[Any, ...], skip: frozenset[str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[")) or part in skip:
            continue  # a validator's or a discriminated union's branch: the path already says which
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def validation_problems(exc: ValidationError, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every error of a pydantic validation as ``path: message``, the path as written in the file
    (``models[2].deployments[0].base_url``); ``skip`` names union tags to leave out of paths."""
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = _path(tuple(err["loc"]), skip)
        if loc == "(top level)" and ": " in msg:
            problems.extend(m.strip() for m in msg.split("; "))
        elif err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown field")
        elif err["type"] == "missing":
            problems.append(f"{loc}: required")
        else:
            problems.append(f"{loc}: {msg}")
    return problems


def parse_config(data: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate ``data``; ``*_env`` settings are read from ``environ`` (default: the process's)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping"])
    try:
        return Config.model_validate(data, context={"environ": os.environ if environ is None else environ})
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc)) from None


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load ``path``; ``None`` gives the embedded default (simulated upstream, demo tenants)."""
    if path is None:
        return parse_config(DEFAULT_CONFIG, environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    return parse_config(data, environ)
