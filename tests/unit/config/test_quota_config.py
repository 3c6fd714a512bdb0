import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seawall.config import ConfigError, load_config, parse_config
from seawall.config.stack import build_quota
from seawall.core.types import Criticality, Principal
from seawall.edges.stores import key_store_for, ledger_sink_for
from seawall.edges.stores.postgres import PostgresKeyStore
from seawall.edges.stores.postgres_ledger import PostgresLedgerSink
from seawall.edges.stores.sqlite import SqliteKeyStore
from seawall.testing import FakeClock

MODELS = [{"name": "m", "deployments": [{"provider": "mock"}]}]


def test_quota_and_shared_store_settings_are_validated_with_paths():
    with pytest.raises(ConfigError) as err:
        parse_config({"models": MODELS, "redis_url": "http://nope", "quotas": {
            "tiers": {"free": {"key": {"requests_per_min": 0}}}}})
    assert sorted(err.value.problems) == [
        "quotas.tiers.free.key.requests_per_min: Input should be greater than or equal to 1",
        "redis_url: not a Redis URL (expected redis://, rediss:// or unix://)"]
    with pytest.raises(ConfigError) as err:
        parse_config({"models": MODELS, "quotas": {"tiers": {"gold": {}}},
                      "database_url": "postgresql://a/b", "store": {"database_url": "postgresql://c/d"}})
    assert err.value.problems == ["database_url: differs from store.database_url (set one)",
                                  "quotas.tiers.gold: unknown tier"]


def test_no_quotas_means_no_quota_policy_and_overrides_merge(tmp_path):
    assert build_quota(parse_config({"models": MODELS}), FakeClock()) is None
    config = parse_config({"models": MODELS, "replicas": 2, "quotas": {
        "tiers": {"free": {"key": {"requests_per_min": 10, "tokens_per_min": 100}}},
        "keys": {"abc": {"tokens_per_min": None}}}})
    policy = build_quota(config, FakeClock(), processes=3)
    assert policy is not None and policy.service.divisor() == 6
    (scope,) = policy.table.scopes(Principal("abc", "t", "free", Criticality.SHEDDABLE))
    assert (scope.limits.requests_per_min, scope.limits.tokens_per_min) == (10, None)


def test_database_url_selects_postgres_stores(tmp_path):
    sqlite = parse_config({"models": MODELS, "store": {"sqlite_path": str(tmp_path / "s.db")}})
    assert isinstance(key_store_for(sqlite), SqliteKeyStore)
    pg = parse_config({"models": MODELS, "store": {"database_url": "postgresql://u@h/db", "database_schema": "x"}})
    store, sink = key_store_for(pg), ledger_sink_for(pg)
    assert isinstance(store, PostgresKeyStore) and store.schema == "x" and store.channel == "x_keys"
    assert isinstance(sink, PostgresLedgerSink)


def test_shared_store_urls_from_environment_variables(tmp_path):
    env = {"SW_REDIS": "redis://:s3cret@redis.internal:6379/0", "SW_PG": "postgresql://sw:s3cret@db/sw"}
    config = parse_config({"models": MODELS, "redis_url_env": "SW_REDIS", "store": {"database_url_env": "SW_PG"}},
                          environ=env)
    assert config.shared_redis_url == env["SW_REDIS"] and config.shared_database_url == env["SW_PG"]
    assert "s3cret" not in config.model_dump_json()  # the file's model holds the names, not the secrets
    assert isinstance(key_store_for(config), PostgresKeyStore)
    path = tmp_path / "c.yaml"
    path.write_text("models: [{name: m, deployments: [{provider: mock}]}]\nstore: {redis_url_env: SW_REDIS}\n")
    assert load_config(path, environ=env).shared_redis_url == env["SW_REDIS"]


def test_unset_or_wrong_url_variables_are_named_with_their_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config({"models": MODELS, "redis_url_env": "SW_REDIS", "store": {"database_url_env": "SW_PG"}},
                      environ={"SW_PG": "mysql://u:s3cret@db/x"})
    assert err.value.problems == [
        "redis_url_env: environment variable SW_REDIS is unset or empty",
        "store.database_url_env: environment variable SW_PG: not a PostgreSQL URL (expected postgresql://)"]
    assert "s3cret" not in str(err.value)  # never echoed
    with pytest.raises(ConfigError) as err:
        parse_config({"models": MODELS, "redis_url": "redis://h/0", "store": {"redis_url_env": "SW_REDIS"}},
                     environ={"SW_REDIS": "redis://h/0"})
    assert err.value.problems == ["store.redis_url_env: set, and redis_url too (set one)"]
    with pytest.raises(ConfigError) as err:
        parse_config({"models": MODELS, "store": {"database_url_env": "1BAD"}}, environ={})
    assert err.value.problems == ["store.database_url_env: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'"]
    # check-config reports it with the path (and exits non-zero)
    path = tmp_path / "c.yaml"
    path.write_text("models: [{name: m, deployments: [{provider: mock}]}]\ndatabase_url_env: SW_UNSET_PG\n")
    out = subprocess.run([sys.executable, "-m", "seawall", "check-config", str(path)], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if k != "SW_UNSET_PG"}, timeout=60)
    assert out.returncode == 1
    assert "database_url_env: environment variable SW_UNSET_PG is unset or empty" in out.stdout


def test_example_config_shared_store_block_is_valid_when_uncommented():
    example = Path(__file__).resolve().parents[3] / "docs" / "config.example.yaml"
    lines = example.read_text().splitlines()
    wanted = ("# database_url_env:", "# database_schema:", "# redis_url_env:", "# redis_prefix:")
    opened = [line.replace("# ", "", 1) if line.strip().startswith(wanted) else line for line in lines]
    assert sum(a != b for a, b in zip(lines, opened, strict=True)) == len(wanted)  # each documented once
    env = {"SEAWALL_REDIS_URL": "redis://:pw@redis.internal:6379/0",
           "SEAWALL_DATABASE_URL": "postgresql://seawall:pw@db.internal:5432/seawall"}
    config = parse_config(yaml.safe_load("\n".join(opened)), environ=env)
    assert (config.shared_redis_url, config.shared_database_url) == (env["SEAWALL_REDIS_URL"],
                                                                      env["SEAWALL_DATABASE_URL"])
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_load("\n".join(opened)), environ={})
    assert sorted(err.value.problems) == ["store.database_url_env: environment variable SEAWALL_DATABASE_URL is unset"
                                          " or empty", "store.redis_url_env: environment variable SEAWALL_REDIS_URL"
                                          " is unset or empty"]
