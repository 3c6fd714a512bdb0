"""A simulated upstream (OpenAI chat/embeddings and Anthropic Messages) with latency, capacity and
injected faults.

Used by ``make run`` (embedded via :func:`start_mock`), by ``seawall mock-upstream``
(:func:`run_mock`), and by the tests and benchmarks as a stand-in provider.
"""

from seawall.mock.app import MOCK_KEY, create_app, run_mock, start_mock, upstream_of
from seawall.mock.config import MockConfig
from seawall.mock.handler import MockUpstream
from seawall.mock.model import Fault
from seawall.mock.stats import MockStats

__all__ = [
    "MOCK_KEY",
    "Fault",
    "MockConfig",
    "MockStats",
    "MockUpstream",
    "create_app",
    "run_mock",
    "start_mock",
    "upstream_of",
]
