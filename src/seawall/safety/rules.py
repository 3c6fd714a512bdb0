"""Stage 1's rule table: one pattern per thing it finds, in four categories.

- ``injection``: text that tries to replace the operator's instructions (ignore the previous
  instructions, reveal the system prompt, forged role markers);
- ``jailbreak``: text that tries to lift the model's restrictions (DAN, "pretend you have no
  rules", unrestricted modes);
- ``secret``: credentials of the major providers (OpenAI, Anthropic, AWS, GitHub, Google, Slack,
  Stripe, Hugging Face), JWTs and private-key blocks;
- ``pii``: e-mail addresses, phone numbers, card numbers (Luhn-checked) and IBANs (mod-97-checked).

A rule's ``score`` (0..1) says how sure a hit is: at or above the policy's ``block_score`` it acts
alone; between ``uncertain_score`` and ``block_score`` it is *uncertain* and may be sent to stage 2.
Secrets and PII that pass their checksum are certain. Patterns are Hyperscan/PCRE syntax over
UTF-8 bytes; phrasing rules are case-insensitive and allow any whitespace between words. Each rule
has a hit and a near miss in ``tests/unit/safety/test_rules.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATEGORIES", "RULES", "Rule"]

CATEGORIES = ("injection", "jailbreak", "secret", "pii")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    pattern: str
    score: float
    caseless: bool = False
    check: str | None = None  # "luhn" | "iban": a checksum the matched text must pass
    redact: bool = False  # replaced in place by the redact action (PII and secrets)
    # Bytes that may not touch the match on either side (Hyperscan has no lookaround): a number
    # inside a longer number, version string or identifier is not a phone or card number.
    fence: bytes = b""
    # Bytes the match extends over to its left after the scan. An e-mail pattern that starts at its
    # local part makes every word a candidate start (~115 µs per 32 KB); anchored on the ``@`` and
    # extended here it costs ~2 µs (docs/decisions.md).
    extend_left: bytes = b""
    # Bytes a match may start and end with; others at its edges (the boundary characters the
    # pattern matched) are trimmed off after the scan.
    core: bytes = b""


# Number-like rules match with the character on each side (or the text's edge) and trim it after:
# a match can then only end where the number ends, so Hyperscan reports each candidate once instead
# of once per digit (a 32 KB prompt full of numbers: ~950 µs -> see docs/decisions.md).
_B = r"(?:^|[^0-9A-Za-z_])"
_E = r"(?:[^0-9A-Za-z_]|$)"
_DIGITS = b"0123456789"
_WORD = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_ANY = r"(?:[\w'-]+\s+){0,3}"  # up to three filler words ("all of the", "your previous")

RULES: tuple[Rule, ...] = (
    # -- injection ------------------------------------------------------------------------------
    Rule("ignore_instructions", "injection",
         r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+" + _ANY
         + r"(?:previous|prior|above|earlier|preceding|initial|original|system|developer|all)\s+"
         r"(?:instructions?|prompts?|rules|directions|guidelines|directives|commands)\b", 0.95, caseless=True),
    Rule("reveal_system_prompt", "injection",
         r"\b(?:reveal|print|show|output|repeat|leak|display|dump|tell\s+me)\s+" + _ANY
         + r"(?:system\s+prompt|system\s+message|hidden\s+instructions|initial\s+instructions|"
         r"instructions\s+above|prompt\s+above)\b", 0.85, caseless=True),
    Rule("role_marker", "injection",
         r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|\[/?INST\]|<<SYS>>|</?system>", 0.8, caseless=True),
    Rule("new_instructions", "injection",
         r"\b(?:new|updated|real|actual)\s+(?:system\s+)?instructions?\s*:", 0.5, caseless=True),
    Rule("from_now_on", "injection",
         r"\bfrom\s+now\s+on,?\s+(?:you\s+(?:will|must|are|shall)|ignore|respond\s+only)\b", 0.45, caseless=True),
    Rule("do_not_follow", "injection",
         r"\b(?:do\s+not|don't|stop)\s+follow(?:ing)?\s+(?:your|the|any)\s+" + _ANY
         + r"(?:rules|guidelines|instructions|policies)\b", 0.8, caseless=True),
    # -- jailbreak ------------------------------------------------------------------------------
    Rule("dan", "jailbreak",
         r"\b[Yy]ou\s+are\s+(?:now\s+)?(?:DAN|STAN|DUDE|AIM)\b|\b(?:DAN|STAN)\s+[Mm]ode\b", 0.95),
    Rule("do_anything_now", "jailbreak", r"\bdo\s+anything\s+now\b", 0.95, caseless=True),
    Rule("no_restrictions", "jailbreak",
         r"\b(?:pretend|imagine|act\s+as\s+if|assume|suppose)\s+(?:that\s+)?you\s+(?:have|had|are|were)\s+"
         r"(?:no|zero|free\s+(?:of|from)|not\s+bound\s+by|without)\s+" + _ANY
         + r"(?:restrictions|rules|limits|limitations|filters|guidelines|polic(?:y|ies)|censorship)\b",
         0.9, caseless=True),
    Rule("unrestricted_mode", "jailbreak",
         r"\b(?:jailbreak|jailbroken|god|unrestricted|unfiltered|evil|dan)\s+mode\b|"
         r"\bdeveloper\s+mode\s+(?:enabled|output|response)", 0.85, caseless=True),
    Rule("not_bound", "jailbreak",
         r"\b(?:you\s+are|you're)\s+(?:no\s+longer|not)\s+(?:bound|restricted|limited|constrained)\s+by\b",
         0.85, caseless=True),
    Rule("no_ethics", "jailbreak",
         r"\b(?:no|without\s+any|without)\s+(?:ethical|moral)\s+(?:guidelines|restrictions|constraints|limits|"
         r"boundaries)\b", 0.6, caseless=True),
    Rule("without_censorship", "jailbreak",
         r"\b(?:without|no)\s+(?:any\s+)?(?:censorship|content\s+filter(?:s|ing)?|safety\s+filters?)\b",
         0.4, caseless=True),
    Rule("stay_in_character", "jailbreak",
         r"\b(?:stay|remain)\s+in\s+character\b", 0.35, caseless=True),
    # -- secrets --------------------------------------------------------------------------------
    Rule("openai_key", "secret",
         r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
         1.0, redact=True),
    Rule("anthropic_key", "secret", r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,}", 1.0, redact=True),
    Rule("aws_access_key", "secret", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", 1.0, redact=True),
    Rule("github_token", "secret",
         r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{82}\b", 1.0, redact=True),
    Rule("google_api_key", "secret", r"\bAIza[0-9A-Za-z_-]{35}", 1.0, redact=True,
         fence=_WORD + b"-"),
    Rule("slack_token", "secret", r"\bxox[abposr]-[0-9]{6,}-[A-Za-z0-9-]{10,}", 1.0, redact=True),
    Rule("stripe_key", "secret", r"\b(?:sk|rk)_live_[A-Za-z0-9]{24,}", 1.0, redact=True),
    Rule("huggingface_token", "secret", r"\bhf_[A-Za-z0-9]{34}\b", 1.0, redact=True),
    Rule("jwt", "secret", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}", 1.0, redact=True),
    Rule("private_key", "secret",
         r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----", 1.0, redact=True),
    # -- PII ------------------------------------------------------------------------------------
    Rule("email", "pii", r"[A-Za-z0-9_%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
         1.0, redact=True, extend_left=_WORD + b".%+-"),
    Rule("phone_intl", "pii", _B + r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}[0-9]" + _E,
         1.0, redact=True, fence=_WORD + b"+.", core=_DIGITS + b"+"),
    Rule("phone_nanp", "pii", _B + r"\(?[2-9][0-9]{2}\)?[ .-][2-9][0-9]{2}[ .-][0-9]{4}" + _E, 1.0,
         redact=True, fence=_WORD + b".+-", core=_DIGITS + b"("),
    Rule("card_number", "pii", _B + r"[2-6][0-9]{3}(?:[ -]?[0-9]){9,15}" + _E, 1.0, check="luhn",
         redact=True, fence=_WORD + b"-.", core=_DIGITS),
    Rule("iban", "pii", _B + r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?" + _E, 1.0,
         check="iban", redact=True, fence=_WORD, core=_DIGITS + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
)
