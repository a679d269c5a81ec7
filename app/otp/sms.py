"""SMS cost controls (against SMS pumping): the countries a mode may text, and its hourly budget.

Both run before any sender is called. Countries are ISO 3166 alpha-2 codes as phonenumbers
knows them (`phonenumbers.SUPPORTED_REGIONS`); a number's country is the region phonenumbers
assigns it (so `+1 684…` is `AS`, not `US`).
"""

from __future__ import annotations

import phonenumbers

from app.errors import ApiError
from app.ratelimit import RateLimits

DEFAULT_SMS_PER_HOUR = 1000


def unknown_countries(codes: list[str]) -> list[str]:
    """The codes that are not ISO 3166 alpha-2 regions phonenumbers can number (for validation)."""
    return [code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS]


def phone_country(e164: str) -> str | None:
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164))


def check_country(allowed: list[str] | None, e164: str) -> None:
    """400 `phone_country_not_allowed` unless the list is empty (every country) or names the phone's."""
    if allowed and phone_country(e164) not in allowed:
        raise ApiError("phone_country_not_allowed")


def spend_budget(limits: RateLimits, per_hour: int, organization_id: str, mode: str) -> None:
    """Count one SMS against the mode's hourly budget; 429 `rate_limited` past it (fails closed)."""
    limits.hit("sms_per_hour", f"{per_hour} per hour", organization_id, mode, "all")
