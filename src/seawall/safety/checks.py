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
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")  # a digit doubled, then its digits summed
_LETTERS = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})  # A=10 ... Z=35 (ISO 13616)


def luhn_valid(digits: bytes) -> bool:
    """True when ``digits`` (ASCII, separators allowed) has 13-19 digits, a card network's leading
    digit (2 and 5 Mastercard, 3 Amex/Diners/JCB, 4 Visa, 6 Discover/UnionPay) and a Luhn check.
    Byte-string operations only (no loop in Python): many candidates in a long prompt fail here."""
    nums = digits.translate(None, _SEPARATORS)
    n = len(nums)
    if not 13 <= n <= 19 or nums[0] not in b"23456" or nums.count(nums[:1]) == n or not nums.isdigit():
        return False
    kept = nums[-1::-2]
    doubled = nums[-2::-2].translate(_DOUBLED)
    return (sum(kept) + sum(doubled) - 48 * n) % 10 == 0


def iban_valid(text: bytes) -> bool:
    """True when ``text`` is an IBAN of its country's length whose mod-97 remainder is 1."""
    compact = text.translate(None, _SEPARATORS).upper()
    if IBAN_LENGTHS.get(compact[:2].decode("ascii", "replace")) != len(compact) or not compact.isalnum():
        return False
    rearranged = (compact[4:] + compact[:4]).decode("ascii").translate(_LETTERS)
    return int(rearranged) % 97 == 1
