"""Normalize identifiers once, at the edge: lower-cased email, E.164 phone."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneNumberType

from app.errors import ApiError

# Numbers that can receive an SMS; premium rate, shared cost, toll free, fixed line… cannot.
SMS_CAPABLE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.VOIP,
               PhoneNumberType.PERSONAL_NUMBER}


@dataclass(frozen=True)
class Identifier:
    channel: str  # "email" | "sms"
    value: str  # normalized: lower-cased email, or E.164

    @property
    def kind(self) -> str:
        return "email" if self.channel == "email" else "phone"


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ApiError("invalid_email") from None
    return result.normalized.lower()


def normalize_phone(raw: str, default_country: str | None) -> str:
    try:
        number = phonenumbers.parse(raw, default_country)
    except phonenumbers.NumberParseException:
        raise ApiError("invalid_phone") from None
    if not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) not in SMS_CAPABLE:
        raise ApiError("invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def identifier_from(data: dict) -> Identifier:
    """The identifier of a validated OTP request or verify body."""
    if data.get("email") is not None:
        return Identifier("email", normalize_email(data["email"]))
    return Identifier("sms", normalize_phone(data["phone"], data.get("default_country")))
