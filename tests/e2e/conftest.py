from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Gateway, Proc, mock_config, start_gateway, start_mock

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def mock(e2e_tmp: Path) -> Iterator[Proc]:
    proc = start_mock(e2e_tmp, "--base-latency-s", "0.005", "--tokens-per-s", "2000", "--seed", "1",
                      "--stall-s", "3")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(e2e_tmp: Path, mock: Proc) -> Iterator[Gateway]:
    # One attempt and a breaker that never opens: these tests check how each single upstream outcome
    # is mapped; failover and breakers have their own tests.
    resilience = {"max_attempts": 1, "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}}
    gw = start_gateway(e2e_tmp, mock_config(mock.url, resilience=resilience))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def resetting(e2e_tmp: Path) -> Iterator[Proc]:
    proc = start_mock(e2e_tmp, "--base-latency-s", "0.005", "--tokens-per-s", "2000", "--reset-rate", "1",
                      "--fault-after-chunks", "2")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def front_door(e2e_tmp: Path, mock: Proc, resetting: Proc) -> Iterator[Gateway]:
    """A gateway with an OpenAI-compatible, an Anthropic and a resetting deployment, and embeddings."""
    resilience = {"max_attempts": 1, "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}}
    config = {
        "models": [
            {"name": "chat", "deployments": [{"name": "mock-a", "base_url": mock.url + "/v1"}]},
            {"name": "claude", "deployments": [{"name": "mock-claude", "provider": "anthropic",
                                                "base_url": mock.url + "/v1"}]},
            {"name": "broken", "deployments": [{"name": "mock-reset", "base_url": resetting.url + "/v1"}]},
            {"name": "embed", "kind": "embeddings", "deployments": [{"name": "mock-e", "base_url": mock.url + "/v1"}]},
            {"name": "moderation", "kind": "moderation",
             "deployments": [{"name": "mock-m", "base_url": mock.url + "/v1"}]},
        ],
        "resilience": resilience,
        "store": {"sqlite_path": str(e2e_tmp / "front-door.db"), "refresh_interval_s": 0.5},
    }
    gateway = start_gateway(e2e_tmp, config)
    yield gateway
    gateway.stop()
