"""Command-line flags for the mock, one per :class:`MockConfig` field (``--base-latency-s 0.05``).

Shared by ``python -m seawall.mock`` and the ``seawall mock-upstream`` command so both accept the
same flags.
"""

from __future__ import annotations

import argparse
import dataclasses

from seawall.mock.config import MockConfig
from seawall.mock.model import BEHAVIOURS

__all__ = ["add_mock_arguments", "mock_config_from_args"]

_INT_FIELDS = frozenset({"completion_tokens", "fault_after_chunks", "embedding_dimensions", "max_num_seqs",
                         "soft_concurrency"})
_OPTIONAL_INT_FIELDS = frozenset({"max_in_flight", "seed", "kv_cache_tokens"})
_OPTIONAL_FLOAT_FIELDS = frozenset({"requests_per_minute", "tokens_per_minute"})


def add_mock_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port`` and one flag per config field (defaults: the dataclass's)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (announced on stdout)")
    defaults = MockConfig()
    for f in dataclasses.fields(MockConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "models":
            parser.add_argument(flag, default=",".join(default), help="comma-separated model ids")
        elif f.name == "behaviour":
            parser.add_argument(flag, choices=list(BEHAVIOURS), default=default, help=f"default: {default}")
        elif f.name in _OPTIONAL_INT_FIELDS or f.name in _OPTIONAL_FLOAT_FIELDS:
            kind = int if f.name in _OPTIONAL_INT_FIELDS else float
            parser.add_argument(flag, type=kind, default=None, help="default: none")
        else:
            kind = int if f.name in _INT_FIELDS else float
            parser.add_argument(flag, type=kind, default=default, help=f"default: {default}")


def mock_config_from_args(args: argparse.Namespace) -> MockConfig:
    """The validated config for parsed flags (``ValueError`` on a bad combination)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(MockConfig)}
    values["models"] = [m.strip() for m in values["models"].split(",") if m.strip()]
    return MockConfig.from_mapping(values)
