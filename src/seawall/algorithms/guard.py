"""The guard cascade's decisions: what stage 1 found -> act, or ask stage 2; what stage 2 said (or
that it could not say) -> the final verdict. Pure: findings and outcomes in, a :class:`Verdict` out.

The guard policy (``policies/guard.py``) and the simulator drive the same functions, so what a tier
gets when stage 2 is saturated, slow or down is decided once, here:

- ``fail_closed``: the request is refused at once (``safety_unavailable``);
- ``degrade``: stage 1's verdict stands, the response says so, and the prompt is queued for an
  asynchronous audit by stage 2 (:class:`AuditQueue`, bounded, oldest dropped first);
- ``fail_open``: stage 1's verdict stands and the gap is logged.

Stage 1 is never skipped: it costs microseconds (``bench/safety.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

__all__ = [
    "ACTIONS",
    "FAILURE_POLICIES",
    "AuditQueue",
    "GuardRules",
    "Hit",
    "Verdict",
    "after_stage1",
    "after_stage2",
    "stage2_unavailable",
]

#: Actions, mildest first; when several categories fire, the strongest wins.
ACTIONS = ("allow", "flag", "redact", "block")
_RANK = {a: i for i, a in enumerate(ACTIONS)}
FAILURE_POLICIES = ("fail_closed", "degrade", "fail_open")


class Hit(Protocol):
    """What the decision reads of a stage-1 finding (``safety/engine.py`` Finding)."""

    @property
    def rule(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True, slots=True)
class GuardRules:
    """One (model group, tier)'s guard policy.

    ``actions``: category -> action for a confident hit (score >= ``block_score``); a category not
    named is allowed. A hit in [``uncertain_score``, ``block_score``) is uncertain: stage 2 decides
    it when ``stage2`` is ``"uncertain"``, and it is flagged when there is no stage 2.
    ``stage2``: ``"off"``, ``"uncertain"`` or ``"always"``. ``moderation_action``: what a stage-2
    flag does. ``on_unavailable``: one of :data:`FAILURE_POLICIES`.
    """

    actions: Mapping[str, str] = field(default_factory=lambda: {
        "injection": "block", "jailbreak": "block", "secret": "block", "pii": "redact"})
    block_score: float = 0.75
    uncertain_score: float = 0.35
    stage2: str = "off"
    moderation_action: str = "block"
    on_unavailable: str = "degrade"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's answer for one prompt.

    ``action``: one of :data:`ACTIONS`, or ``"unavailable"`` (refuse: stage 2 was needed and the
    tier fails closed). ``ask_stage2``: stage 1 alone cannot finish; call stage 2, then
    :func:`after_stage2` or :func:`stage2_unavailable`. ``redact``: the categories to redact.
    ``rules``: ``category/rule`` of every hit that counted, for the ledger. ``degraded``: stage 2
    was wanted and skipped; ``audit``: queue the prompt for a later stage-2 look.
    """

    action: str
    score: float = 0.0
    rules: tuple[str, ...] = ()
    redact: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    ask_stage2: bool = False
    stage: str = "1"
    degraded: bool = False
    audit: bool = False


ALLOW = Verdict("allow")


def after_stage1(hits: Iterable[Hit], rules: GuardRules) -> Verdict:
    """Stage 1's verdict from its hits under ``rules``."""
    action = "allow"
    score = 0.0
    counted: list[str] = []
    redact: set[str] = set()
    categories: set[str] = set()
    uncertain = False
    for hit in hits:
        s = hit.score
        if s < rules.uncertain_score:
            continue
        wanted = rules.actions.get(hit.category, "allow")
        if wanted == "allow":
            continue
        counted.append(f"{hit.category}/{hit.rule}")
        score = max(score, s)
        categories.add(hit.category)
        if s < rules.block_score:
            uncertain = True
            wanted = "flag"  # until stage 2 says more
        if wanted == "redact":
            redact.add(hit.category)
        if _RANK[wanted] > _RANK[action]:
            action = wanted
    ask = rules.stage2 == "always" or (rules.stage2 == "uncertain" and uncertain and action != "block")
    if action == "allow" and not ask:
        return ALLOW
    return Verdict(action, score, tuple(counted), frozenset(redact), frozenset(categories), ask_stage2=ask)


def after_stage2(first: Verdict, flagged: bool, categories: Iterable[str], score: float,
                 rules: GuardRules) -> Verdict:
    """Stage 2 answered: its flag applies ``moderation_action`` on top of stage 1's verdict."""
    cats = tuple(categories)
    action = first.action
    if flagged and _RANK[rules.moderation_action] > _RANK[action]:
        action = rules.moderation_action
    elif not flagged and action == "flag" and first.score < rules.block_score:
        action = "redact" if first.redact else "allow"  # stage 2 cleared what stage 1 was unsure of
    return Verdict(action, max(first.score, score if flagged else 0.0),
                   first.rules + tuple(f"moderation/{c}" for c in cats), first.redact,
                   first.categories | ({"moderation"} if flagged else set()), stage="1+2")


def stage2_unavailable(first: Verdict, rules: GuardRules) -> Verdict:
    """Stage 2 was needed but is saturated, slow or down: the tier's ``on_unavailable`` decides."""
    policy = rules.on_unavailable
    if policy == "fail_closed":
        return Verdict("unavailable", first.score, first.rules, first.redact, first.categories,
                       stage="1+2", degraded=True)
    return Verdict(first.action, first.score, first.rules, first.redact, first.categories, stage="1",
                   degraded=True, audit=policy == "degrade")


T = TypeVar("T")


class AuditQueue(Generic[T]):
    """Prompts waiting for a stage-2 audit after a ``degrade``: at most ``max_items``; when full,
    the oldest is dropped (the newest is likeliest to matter now) and counted in ``dropped``."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque[T] = deque()
        self.dropped = 0
        self.queued = 0

    def push(self, item: T) -> None:
        if self.max_items <= 0:
            self.dropped += 1
            return
        if len(self._items) >= self.max_items:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self.queued += 1

    def unpop(self, item: T) -> None:
        """Put back at the front an item whose audit could not run now (stage 2 still short)."""
        if len(self._items) < self.max_items:
            self._items.appendleft(item)
        else:
            self.dropped += 1

    def pop(self) -> T | None:
        return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)
