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
