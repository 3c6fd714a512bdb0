"""Checksums that turn a pattern match into a finding: Luhn for card numbers, ISO 13616 mod-97 for
IBANs. Pure functions on the matched bytes; a separator (space, dash) is skipped."""

from __future__ import annotations

__all__ = ["iban_valid", "luhn_valid"]

#: IBAN length per country (ISO 13616 registry, the SEPA countries and the common others).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22,
    "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29,
    "VA": 22, "VG": 24, "XK": 20,
}
_SEPARATORS = b" -"


def luhn_valid(digits: bytes) -> bool:
    """True when ``digits`` (ASCII, separators allowed) has 13-19 digits, a card network's leading
    digit (3 Amex/Diners/JCB, 4 Visa, 5 and 2 Mastercard, 6 Discover/UnionPay) and a Luhn check."""
    nums = [c - 48 for c in digits if c not in _SEPARATORS]
    if not 13 <= len(nums) <= 19 or nums[0] not in (2, 3, 4, 5, 6) or len(set(nums)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(nums)):
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(text: bytes) -> bool:
    """True when ``text`` is an IBAN of its country's length whose mod-97 remainder is 1."""
    compact = bytes(c for c in text if c not in _SEPARATORS).upper()
    country = compact[:2].decode("ascii", "replace")
    if IBAN_LENGTHS.get(country) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    remainder = 0
    for c in rearranged:
        if 48 <= c <= 57:
            remainder = (remainder * 10 + c - 48) % 97
        elif 65 <= c <= 90:
            remainder = (remainder * 100 + c - 55) % 97
        else:
            return False
    return remainder == 1
