"""The guard cascade's pure decisions."""

from dataclasses import dataclass

from seawall.algorithms.guard import AuditQueue, GuardRules, after_stage1, after_stage2, stage2_unavailable


@dataclass(frozen=True)
class H:
    rule: str
    category: str
    score: float


RULES = GuardRules(stage2="uncertain")


def test_no_hits_allow_without_stage_2():
    v = after_stage1([], RULES)
    assert v.action == "allow" and not v.ask_stage2


def test_strongest_action_wins_and_redactions_are_collected():
    v = after_stage1([H("email", "pii", 1.0), H("ignore", "injection", 0.95)], RULES)
    assert v.action == "block" and v.redact == {"pii"} and not v.ask_stage2
    v = after_stage1([H("email", "pii", 1.0)], RULES)
    assert v.action == "redact" and v.rules == ("pii/email",)


def test_uncertain_hits_ask_stage_2_or_flag_without_one():
    v = after_stage1([H("stay", "jailbreak", 0.4)], RULES)
    assert v.action == "flag" and v.ask_stage2
    assert not after_stage1([H("stay", "jailbreak", 0.4)], GuardRules(stage2="off")).ask_stage2
    assert after_stage1([H("stay", "jailbreak", 0.2)], RULES).action == "allow"  # below uncertain_score


def test_always_asks_stage_2_even_for_a_clean_prompt():
    assert after_stage1([], GuardRules(stage2="always")).ask_stage2


def test_stage_2_flag_blocks_and_a_clear_lifts_an_uncertain_flag():
    first = after_stage1([H("stay", "jailbreak", 0.4)], RULES)
    assert after_stage2(first, True, ["violence"], 0.9, RULES).action == "block"
    cleared = after_stage2(first, False, [], 0.01, RULES)
    assert cleared.action == "allow" and cleared.stage == "1+2"
    flag_only = GuardRules(stage2="uncertain", moderation_action="flag")
    assert after_stage2(first, True, ["violence"], 0.9, flag_only).action == "flag"


def test_unavailable_follows_the_tier_policy():
    first = after_stage1([H("email", "pii", 1.0), H("stay", "jailbreak", 0.4)], RULES)
    closed = stage2_unavailable(first, GuardRules(on_unavailable="fail_closed"))
    assert closed.action == "unavailable" and closed.degraded
    degraded = stage2_unavailable(first, GuardRules(on_unavailable="degrade"))
    assert degraded.action == "redact" and degraded.degraded and degraded.audit
    opened = stage2_unavailable(first, GuardRules(on_unavailable="fail_open"))
    assert opened.action == "redact" and opened.degraded and not opened.audit


def test_audit_queue_drops_oldest_first_and_counts():
    q: AuditQueue[int] = AuditQueue(2)
    for i in range(5):
        q.push(i)
    assert len(q) == 2 and q.dropped == 3 and q.pop() == 3 and q.pop() == 4 and q.pop() is None
    none: AuditQueue[int] = AuditQueue(0)
    none.push(1)
    assert len(none) == 0 and none.dropped == 1
