"""Stage 1: every rule of :mod:`seawall.safety.rules` in one Hyperscan database, one pass per text.

Hyperscan (Intel's multi-pattern regex engine, the ``hyperscan`` package) compiles the whole rule
table into one automaton and scans a prompt once, whatever the number of rules: ~2 µs of fixed cost
and well under a microsecond per KB on the measured prompts (``bench/safety.py``; the choice over
RE2's ``Set`` and pyahocorasick is in docs/decisions.md). Phrasing rules report once per scan
(``SINGLEMATCH``); span rules (secrets, PII) report their leftmost start so that a checksum can be
run on the exact bytes and the redact action can replace them.

Pure detection: bytes in, findings out; no I/O, no clock. The database's scratch space is reused
across scans, so one :class:`Stage1` serves one event loop (not threads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import hyperscan

from seawall.safety.checks import iban_valid, luhn_valid
from seawall.safety.rules import RULES, Rule

__all__ = ["Finding", "Stage1"]

_CHECKS: dict[str, Callable[[bytes], bool]] = {"luhn": luhn_valid, "iban": iban_valid}
_SOFT_AFTER = frozenset(b".-")  # after a match these fence it only when a word character follows


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's hit: byte offsets into the scanned text (``start == end == -1`` for a phrasing
    rule, which reports that it matched, not where)."""

    rule: str
    category: str
    score: float
    start: int = -1
    end: int = -1


class Stage1:
    """The compiled rule table. ``scan`` finds, ``redact`` replaces what the rules mark redactable."""

    def __init__(self, rules: Iterable[Rule] = RULES) -> None:
        self.rules = tuple(rules)
        flags = []
        for rule in self.rules:
            f = hyperscan.HS_FLAG_CASELESS if rule.caseless else 0
            f |= hyperscan.HS_FLAG_SOM_LEFTMOST if rule.redact else hyperscan.HS_FLAG_SINGLEMATCH
            flags.append(f)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=[r.pattern.encode() for r in self.rules], ids=list(range(len(self.rules))),
                         elements=len(self.rules), flags=flags)
        self._word = [frozenset(r.fence) for r in self.rules]

    def scan(self, text: bytes) -> list[Finding]:
        """Every finding in ``text`` (UTF-8): phrasing rules once each, span rules once per place."""
        phrases: list[int] = []
        spans: dict[tuple[int, int], list[int]] = {}

        def on_match(rule_id: int, start: int, end: int, flags: int, context: object) -> None:
            if not self.rules[rule_id].redact:
                phrases.append(rule_id)
            else:
                ends = spans.get((rule_id, start))
                if ends is None:
                    spans[(rule_id, start)] = [end]
                else:
                    ends.append(end)

        self._db.scan(text, match_event_handler=on_match)
        rules = self.rules
        out = [Finding(rules[i].id, rules[i].category, rules[i].score) for i in phrases]
        if spans:
            out += self._spans(text, spans)
        return out

    def _spans(self, text: bytes, spans: dict[tuple[int, int], list[int]]) -> list[Finding]:
        out: list[Finding] = []
        last_end: dict[int, int] = {}
        for (rule_id, start), ends in sorted(spans.items(), key=_by_start):
            if start < last_end.get(rule_id, -1):
                continue  # inside a span this rule already reported
            rule = self.rules[rule_id]
            if rule.extend_left:
                start = _extend_left(text, start, rule.extend_left)
            core = rule.core
            if core:
                while text[start] not in core:
                    start += 1
            fence = self._word[rule_id]
            if fence and start > 0 and text[start - 1] in fence:
                continue
            check = _CHECKS[rule.check] if rule.check is not None else None
            for end in reversed(ends):  # Hyperscan reports in order of end: longest first
                if core:
                    while end > start and text[end - 1] not in core:
                        end -= 1
                if fence and end < len(text) and _fenced_after(text, end, fence):
                    continue
                if check is not None and not check(text[start:end]):
                    continue
                out.append(Finding(rule.id, rule.category, rule.score, start, end))
                last_end[rule_id] = end
                break
        return out

    def redact(self, text: str, categories: frozenset[str], mask: str = "[{rule}]") -> tuple[str, list[Finding]]:
        """``text`` with every redactable finding in ``categories`` replaced by ``mask`` (formatted
        with ``rule`` and ``category``), and the findings replaced; overlapping spans merge."""
        data = text.encode()
        found = sorted((f for f in self.scan(data) if f.start >= 0 and f.category in categories),
                       key=lambda f: (f.start, -f.end))
        if not found:
            return text, []
        parts: list[bytes] = []
        pos = 0
        used: list[Finding] = []
        for f in found:
            if f.start < pos:
                continue
            parts.append(data[pos:f.start])
            parts.append(mask.format(rule=f.rule, category=f.category).encode())
            pos = f.end
            used.append(f)
        parts.append(data[pos:])
        return b"".join(parts).decode("utf-8", "replace"), used


def _by_start(item: tuple[tuple[int, int], list[int]]) -> int:
    return item[0][1]


def _extend_left(text: bytes, start: int, allowed: bytes, max_bytes: int = 64) -> int:
    stop = max(0, start - max_bytes)
    while start > stop and text[start - 1] in allowed:
        start -= 1
    return start


def _fenced_after(text: bytes, end: int, fence: frozenset[int]) -> bool:
    after = text[end]
    if after not in fence:
        return False
    if after in _SOFT_AFTER:
        return end + 1 < len(text) and chr(text[end + 1]).isalnum()
    return True
