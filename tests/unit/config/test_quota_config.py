import pytest

from seawall.config import ConfigError, parse_config
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
