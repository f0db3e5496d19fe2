"""``scrubPii``: personal data in prompts and answers replaced by a tag naming its kind.

No maintained detector installs here without downloading a language model at run time, so
the detector is these documented patterns (README, "Conversation"): e-mail addresses, URLs,
IPv4/IPv6 addresses, payment card numbers (Luhn-checked), US social security numbers and
phone numbers, in that order, so a URL's host is not mistaken for something else.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"']+", re.IGNORECASE)
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
# Not part of a longer run of digit groups (an order number is not a phone number).
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
    r"\d{3,4}[ .-]?\d{3,4}\b(?![ .-]?\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _ip(m: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(m.group())
    except ValueError:
        return False
    return True


def _any(m: re.Match[str]) -> bool:
    return True


_RULES: tuple[tuple[re.Pattern[str], str, Callable[[re.Match[str]], bool]], ...] = (
    (_EMAIL, "<EMAIL_ADDRESS>", _any),
    (_URL, "<URL>", _any),
    (_IPV4, "<IP_ADDRESS>", _ip),
    (_IPV6, "<IP_ADDRESS>", _ip),
    (_CARD, "<CREDIT_CARD>", _card),
    (_SSN, "<US_SSN>", _any),
    (_PHONE, "<PHONE_NUMBER>", _any),
)


def scrub(text: str) -> str:
    """``text`` with each piece of personal data replaced by its tag."""
    for pattern, tag, valid in _RULES:

        def replace(m: re.Match[str], tag: str = tag, valid: Callable[..., bool] = valid) -> str:
            return tag if valid(m) else m.group()

        text = pattern.sub(replace, text)
    return text
