"""Normalisation and validation of lead fields, shared by single and bulk ingestion.

Plain functions (no DRF) so the bulk importer can run them per row at full speed. The API's
input serializers (`LeadCreateInput`, `LeadUpdateInput`, `ConsentRecordInput`) call the same
`lead_row_validate` and `consent_record_validate`, so a row of a file and a single `POST` are
judged by one piece of code, with the same error codes and messages.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from consent.models import CONSENT_SCOPES
from gtm_api.phones import e164_if_valid

MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_TEXT = 1000
MAX_CONSENTS_PER_REQUEST = 20
# How far in the future a consent's `captured_at` may be (clocks of integrators drift).
CLOCK_SKEW = timedelta(minutes=5)

COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)

# phonenumbers then keeps the patterns it compiles, rather than looking each one up in `re`'s
# cache on every use (the numbers `e164_if_valid` leaves to it are still parsed in full).
phonenumbers.enable_pattern_cache()

# Messages of the DRF fields the API used before this module existed; integrators match on them.
REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_BLANK = "This field may not be blank."
UNKNOWN_FIELD = "Unknown or read-only field."
DATETIME_FORMAT_HINT = "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]"


class FieldInvalid(ValueError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: `field` is a path such as `email` or `consents[0].scope`."""

    field: str
    code: str
    message: str


class _DomainCachingEmailValidator(EmailValidator):
    """Django's EmailValidator, remembering its verdict per domain: files repeat domains a lot."""

    _MAX_CACHED = 100_000

    def __init__(self) -> None:
        super().__init__()
        self._domains: dict[str, bool] = {}
        # The compiled pattern itself rather than Django's lazy proxy of it, which costs an
        # indirection on every use.
        lazy = EmailValidator.user_regex
        self.user_regex = re.compile(lazy.pattern, lazy.flags)

    def validate_domain_part(self, domain_part: str) -> bool:
        verdict = self._domains.get(domain_part)
        if verdict is None:
            verdict = super().validate_domain_part(domain_part)
            if len(self._domains) < self._MAX_CACHED:
                self._domains[domain_part] = verdict
        return verdict


_email_validator = _DomainCachingEmailValidator()


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
    # The common written forms of a valid number, answered without phonenumbers' parser.
    if (e164 := e164_if_valid(raw, country)) is not None:
        return e164
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


def clean_text(
    value: Any, *, max_length: int | None, allow_blank: bool = False, checked: bool = True
) -> str:
    """A string field: numbers are read as text, whitespace trimmed, NUL characters refused.

    `checked=False` stops after trimming, for a normaliser that accepts only a fixed set of
    values anyway (the country code).
    """
    if type(value) is str:
        text = value.strip()
        # The common case, decided without the checks below.
        if text and (
            not checked or ((max_length is None or len(text) <= max_length) and "\x00" not in text)
        ):
            return text
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value).strip()
    else:
        raise FieldInvalid("invalid", "Not a valid string.")
    if not text:
        if allow_blank:
            return ""
        raise FieldInvalid("blank", NOT_BLANK)
    if not checked:
        return text
    if max_length is not None and len(text) > max_length:
        raise FieldInvalid(
            "max_length", f"Ensure this field has no more than {max_length} characters."
        )
    if "\x00" in text:
        raise FieldInvalid("null_characters_not_allowed", "Null characters are not allowed.")
    return text


def clean_timestamp(value: Any) -> datetime:
    """RFC 3339 / ISO 8601; a time without offset is read as UTC."""
    parsed = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise FieldInvalid(
            "invalid",
            f"Datetime has wrong format. Use one of these formats instead: {DATETIME_FORMAT_HINT}.",
        )
    zone = timezone.get_current_timezone()
    try:
        if timezone.is_aware(parsed):
            return parsed.astimezone(zone)
        return timezone.make_aware(parsed, zone)
    except (OverflowError, ValueError):
        raise FieldInvalid("overflow", "Datetime value out of range.") from None


# DRF's BooleanField spellings (`1 == True` and `0 == 0.0 == False` share their set entries).
_TRUE = frozenset({"t", "y", "yes", "true", "on", "1", 1})
_FALSE = frozenset({"f", "n", "no", "false", "off", "0", 0})


def clean_boolean(value: Any) -> bool:
    key = value.lower() if isinstance(value, str) else value
    try:
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    except TypeError:  # unhashable: a list or an object
        pass
    raise FieldInvalid("invalid", "Must be a valid boolean.")


# -- lead rows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextSpec:
    name: str
    max_length: int | None
    required: bool = False
    normalize: Callable[[str], str] | None = None
    checked: bool = True  # length and NUL checks before `normalize` (see `clean_text`)

    @property
    def nullable(self) -> bool:
        return not self.required


# The writable contact fields of a lead, in the order errors are reported. `phone` is normalised
# after `country` is known (a national number needs it).
LEAD_TEXT_FIELDS = (
    TextSpec("external_id", 255),
    TextSpec("email", 254, normalize=normalize_email),
    TextSpec("phone", 32),
    TextSpec("first_name", 100, required=True),
    TextSpec("last_name", 100, required=True),
    TextSpec("company", 200),
    TextSpec("job_title", 200),
    TextSpec("country", None, normalize=normalize_country, checked=False),
    TextSpec("source", 64, required=True),
)
MAX_LENGTHS = {spec.name: spec.max_length for spec in LEAD_TEXT_FIELDS}
# The specs as plain tuples for the loop of `lead_row_validate`, which runs for every row of a
# file; a field without a length limit (country: not `checked`) never reads its `limit`.
_TEXT_SPECS = tuple(
    (spec.name, spec.max_length, spec.max_length or 0, spec.required, spec.normalize, spec.checked)
    for spec in LEAD_TEXT_FIELDS
)
_ABSENT = object()
LEAD_FIELDS = (*(spec.name for spec in LEAD_TEXT_FIELDS), "attributes")
_CREATE_FIELDS = frozenset((*LEAD_FIELDS, "consents"))
_UPDATE_FIELDS = frozenset(LEAD_FIELDS)


def _unknown(
    data: Mapping[Any, Any], allowed: frozenset[str], prefix: str = ""
) -> list[FieldError]:
    return [
        FieldError(f"{prefix}{name}", "unknown_field", UNKNOWN_FIELD)
        for name in sorted((name for name in data if name not in allowed), key=str)
    ]


def lead_row_validate(
    data: Mapping[str, Any], *, partial: bool = False, default_country: str | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate and normalise one lead: the body of `POST /v1/leads` or one row of an import.

    Returns `(clean, errors)`; `clean` holds only the fields given (normalised: email lower
    case, phone E.164, country upper case) and is meaningless when `errors` is not empty.
    `partial=True` is a contact-field update (`PATCH`): nothing is required, `consents` is not
    a field, and a national phone number is read with `default_country` unless the update sets
    `country` too.
    """
    allowed = _UPDATE_FIELDS if partial else _CREATE_FIELDS
    errors = [] if allowed.issuperset(data) else _unknown(data, allowed)
    clean: dict[str, Any] = {}
    for name, max_length, limit, required, normalize, checked in _TEXT_SPECS:
        value = data.get(name, _ABSENT)
        if value is _ABSENT:
            if required and not partial:
                errors.append(FieldError(name, "required", REQUIRED))
            continue
        if value is None:
            if required:
                errors.append(FieldError(name, "null", NOT_NULL))
            else:
                clean[name] = None
            continue
        try:
            # The common case, a string that needs no other check, decided here rather than
            # in a call of `clean_text` (which decides it the same way).
            if not (
                type(value) is str
                and (text := value.strip())
                and (not checked or (len(text) <= limit and "\x00" not in text))
            ):
                text = clean_text(value, max_length=max_length, checked=checked)
            clean[name] = text if normalize is None else normalize(text)
        except FieldInvalid as exc:
            errors.append(FieldError(name, exc.code, exc.message))
    phone = clean.get("phone")
    if phone is not None:
        # The row's own country (even an invalid or null one) wins over the stored one.
        country = clean.get("country", None if "country" in data else default_country)
        try:
            clean["phone"] = normalize_phone(phone, country)
        except FieldInvalid as exc:
            errors.append(FieldError("phone", exc.code, exc.message))
    if "attributes" in data:
        attributes = data["attributes"]
        if attributes is None:
            errors.append(FieldError("attributes", "null", NOT_NULL))
        else:
            try:
                clean["attributes"] = validate_attributes(attributes)
            except FieldInvalid as exc:
                errors.append(FieldError("attributes", exc.code, exc.message))
    if not partial:
        if "consents" in data:
            _consents(data["consents"], clean, errors)
        if (
            clean.get("email") is None
            and clean.get("phone") is None
            and not any(error.field in ("email", "phone") for error in errors)
        ):
            errors.append(
                FieldError(
                    "email", "email_or_phone_required", "Give at least one of email or phone."
                )
            )
    return clean, errors


def _consents(value: Any, clean: dict[str, Any], errors: list[FieldError]) -> None:
    if value is None:
        errors.append(FieldError("consents", "null", NOT_NULL))
        return
    if isinstance(value, str | Mapping) or not hasattr(value, "__iter__"):
        errors.append(
            FieldError(
                "consents",
                "not_a_list",
                f'Expected a list of items but got type "{type(value).__name__}".',
            )
        )
        return
    records = []
    failed = False
    for index, item in enumerate(value):
        record, record_errors = consent_record_validate(item, prefix=f"consents[{index}]")
        if record_errors:
            failed = True
            errors.extend(record_errors)
        records.append(record)
    if failed:
        return
    if len(records) > MAX_CONSENTS_PER_REQUEST:
        errors.append(
            FieldError(
                "consents",
                "max_length",
                f"Ensure this field has no more than {MAX_CONSENTS_PER_REQUEST} elements.",
            )
        )
        return
    clean["consents"] = records


# -- consent records ----------------------------------------------------------------------------

_CONSENT_FIELDS = frozenset(("scope", "granted", "captured_at", "source", "evidence", "expires_at"))


def consent_record_validate(
    data: Any, *, prefix: str = ""
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate one consent record `{scope, granted, captured_at, source, evidence?, expires_at?}`.

    Error paths are prefixed with `prefix` (e.g. `consents[0]`), as in a lead body.
    """
    dot = f"{prefix}." if prefix else ""
    if not isinstance(data, Mapping):
        message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
        return {}, [FieldError(prefix, "invalid", message)]
    errors = _unknown(data, _CONSENT_FIELDS, dot)
    clean: dict[str, Any] = {}

    def take(name: str, required: bool, parse: Callable[[Any], Any], nullable: bool) -> None:
        if name not in data:
            if required:
                errors.append(FieldError(dot + name, "required", REQUIRED))
            return
        value = data[name]
        if value is None:
            if nullable:
                clean[name] = None
            else:
                errors.append(FieldError(dot + name, "null", NOT_NULL))
            return
        try:
            clean[name] = parse(value)
        except FieldInvalid as exc:
            errors.append(FieldError(dot + name, exc.code, exc.message))

    take("scope", True, _consent_scope, False)
    take("granted", True, clean_boolean, False)
    take("captured_at", True, clean_timestamp, False)
    take("source", True, lambda v: clean_text(v, max_length=64), False)
    take("evidence", False, lambda v: clean_text(v, max_length=2000, allow_blank=True), True)
    take("expires_at", False, clean_timestamp, True)
    if errors:
        return clean, errors
    if clean["captured_at"] > timezone.now() + CLOCK_SKEW:
        errors.append(FieldError(dot + "captured_at", "in_future", "Must not be in the future."))
    elif clean.get("expires_at") is not None and clean["expires_at"] <= clean["captured_at"]:
        errors.append(
            FieldError(dot + "expires_at", "before_capture", "Must be after captured_at.")
        )
    return clean, errors


def _consent_scope(value: Any) -> str:
    scope = str(value)
    if scope not in CONSENT_SCOPES:
        raise FieldInvalid("invalid_choice", f'"{value}" is not a valid choice.')
    return scope
