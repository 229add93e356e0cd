"""Normalisation and validation of lead fields, shared by single and bulk ingestion.

Plain functions (no DRF) so the bulk importer can run them per row at full speed. Each raises
`FieldInvalid` with a stable code and a message the integrator can act on.
"""

from typing import Any

import phonenumbers
import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_TEXT = 1000

_email_validator = EmailValidator()
COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)


class FieldInvalid(ValueError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def normalize_email(value: str) -> str:
    email = value.strip().lower()
    try:
        _email_validator(email)
    except ValidationError:
        raise FieldInvalid("invalid_email", f"{value!r} is not a valid email address.") from None
    return email


def normalize_phone(value: str, country: str | None = None) -> str:
    """E.164; a national number needs the lead's `country` to be read."""
    raw = value.strip()
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else country)
    except phonenumbers.NumberParseException:
        hint = "" if raw.startswith("+") or country else " (give it in +E.164 form or set country)"
        raise FieldInvalid("invalid_phone", f"{value!r} is not a phone number{hint}.") from None
    if not phonenumbers.is_valid_number(number):
        raise FieldInvalid("invalid_phone", f"{value!r} is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_country(value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRY_CODES:
        raise FieldInvalid("invalid_country", f"{value!r} is not an ISO 3166-1 alpha-2 code.")
    return code


def validate_attributes(value: Any) -> dict[str, Any]:
    """A flat object of ≤ 50 keys with string, number, boolean or null values."""
    if not isinstance(value, dict):
        raise FieldInvalid("invalid_attributes", "attributes must be a JSON object.")
    if len(value) > MAX_ATTRIBUTES:
        raise FieldInvalid(
            "too_many_attributes", f"attributes may hold at most {MAX_ATTRIBUTES} keys."
        )
    for key, item in value.items():
        if "\x00" in key or (isinstance(item, str) and "\x00" in item):
            raise FieldInvalid("null_character", f"attributes.{key!r} contains a NUL character.")
        if not key or len(key) > MAX_ATTRIBUTE_KEY:
            raise FieldInvalid(
                "invalid_attribute_key", f"Attribute keys must be 1–{MAX_ATTRIBUTE_KEY} characters."
            )
        if isinstance(item, dict | list):
            raise FieldInvalid(
                "nested_attribute", f"attributes.{key} must be a scalar, not nested."
            )
        if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_TEXT:
            raise FieldInvalid(
                "attribute_too_long", f"attributes.{key} exceeds {MAX_ATTRIBUTE_TEXT} characters."
            )
    return value
