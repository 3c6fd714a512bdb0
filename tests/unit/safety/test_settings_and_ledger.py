"""The ``guard:`` config (per model group and tier, checked against the models) and the ledger's
guard columns, added to a ledger made before they existed."""

import sqlite3

import pytest
from pydantic import ValidationError

from seawall.config.schema import Config
from seawall.edges.ledger import LedgerRecord, guard_columns
from seawall.edges.stores.sqlite_ledger import SqliteLedgerSink
from seawall.policies.guard import GuardRecord

MODELS = [{"name": "chat", "deployments": [{"provider": "mock"}]},
          {"name": "mod", "kind": "moderation", "deployments": [{"provider": "mock"}]}]


def test_policies_apply_per_model_and_tier_first_match_wins():
    cfg = Config(models=MODELS, guard={
        "stage2": {"model": "mod"},
        "default": {"on_unavailable": "degrade"},
        "policies": [{"tiers": ["free"], "on_unavailable": "fail_open", "actions": {"pii": "flag"}},
                     {"models": ["chat"], "tiers": ["enterprise"], "stage2": "always",
                      "on_unavailable": "fail_closed"}]})
    assert cfg.guard is not None
    free = cfg.guard.rules_for("chat", "free")
    assert free.on_unavailable == "fail_open" and free.actions == {"pii": "flag"} and free.stage2 == "uncertain"
    ent = cfg.guard.rules_for("chat", "enterprise")
    assert ent.stage2 == "always" and ent.on_unavailable == "fail_closed" and ent.actions["injection"] == "block"
    assert cfg.guard.rules_for("other", "enterprise").on_unavailable == "degrade"


def test_stage2_must_name_a_moderation_group():
    with pytest.raises(ValidationError, match=r"guard\.stage2\.model"):
        Config(models=MODELS, guard={"stage2": {"model": "chat"}})
    with pytest.raises(ValidationError):
        Config(models=MODELS, guard={"default": {"on_unavailable": "maybe"}})


def test_without_stage2_uncertain_hits_are_flagged_not_sent():
    cfg = Config(models=MODELS, guard={})
    assert cfg.guard is not None and cfg.guard.rules_for("chat", "free").stage2 == "off"


def _record(i: int, **guard: object) -> LedgerRecord:
    return LedgerRecord(f"r{i}", 1.0, f"req{i}", "t", "k", "free", "chat", "d", 1, 2, 0.1, None, 200, "ok", **guard)


def test_sqlite_ledger_gains_the_guard_columns_on_an_old_table(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE usage (record_id TEXT PRIMARY KEY, ts REAL NOT NULL, request_id TEXT NOT NULL,"
                 " tenant TEXT, key_id TEXT, tier TEXT, model TEXT, deployments TEXT NOT NULL, tokens_in INTEGER"
                 " NOT NULL, tokens_out INTEGER NOT NULL, latency_s REAL NOT NULL, ttft_s REAL, status INTEGER"
                 " NOT NULL, reason TEXT NOT NULL)")
    conn.execute("INSERT INTO usage VALUES ('old', 0, 'r', NULL, NULL, NULL, NULL, '', 0, 0, 0, NULL, 200, 'ok')")
    conn.commit()
    conn.close()
    sink = SqliteLedgerSink(db)
    g = GuardRecord("block", "1+2", "injection/ignore_instructions", 0.95, 0.0004, True, "stage2_timeout",
                    "block:secret/aws_access_key")
    sink.write_sync([_record(1, **guard_columns(g)), _record(2)])
    rows = sqlite3.connect(db).execute("SELECT record_id, guard_action, guard_stage, guard_rules, guard_degraded,"
                                       " guard_output FROM usage ORDER BY record_id").fetchall()
    assert rows == [("old", None, None, None, None, None),
                    ("r1", "block", "1+2", "injection/ignore_instructions", 1, "block:secret/aws_access_key"),
                    ("r2", None, None, None, None, None)]
