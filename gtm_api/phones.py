"""Phone numbers to E.164: phonenumbers' answer, for the common forms without its general parser.

`normalize_phone` (in `lead_fields`) asks `e164_if_valid` first. It answers only for a number
written with ASCII digits and the usual separators (spaces, dots, hyphens, parentheses), with or
without a leading `+` — `+1 (646) 320-8117`, `+44 20 7946 0582`, `030 4837993` with the lead's
country — and only when the number is valid. For such a string `phonenumbers.parse` drops the
separators and comes down to the steps below (the country calling code, or the default region;
the national prefix), run here with phonenumbers' own helpers and metadata; validity is
`phonenumbers.is_valid_number`'s test of the same metadata patterns, with the patterns compiled
once. Anything else — letters, an extension, an international call prefix, a national number
that starts with its country calling code, an invalid number (whose error message phonenumbers
words) — gets None, and phonenumbers decides. A lead file is mostly phone numbers in these forms,
and the general parser costs several times these steps. `tests/gtm_api/test_phones.py` checks
that both give the same answer over numbers of every region, written in every format.
"""

import re
from functools import cache

from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    REGION_CODE_FOR_NON_GEO_ENTITY,
    SUPPORTED_REGIONS,
    PhoneMetadata,
)
from phonenumbers.phonemetadata import PhoneNumberDesc
from phonenumbers.phonenumberutil import (
    ValidationResult,
    _extract_country_code,
    _maybe_strip_national_prefix_carrier_code,
    _test_number_length,
    region_code_for_country_code,
)

_WRITTEN = re.compile(r"(\+?)([0-9 ().\-]+)")
_SEPARATORS = str.maketrans("", "", " ().-")
# phonenumbers' bounds: on the input, on the digits after a `+`, on a national number.
_MAX_INPUT_LENGTH = 250
_MIN_LENGTH_FOR_NSN = 2
_MAX_LENGTH_FOR_NSN = 17
# Two digits alone may be a short number, which phonenumbers reads apart.
_MIN_DIGITS = 3
# A national prefix is kept when the number without it would not have a possible length.
_PREFIX_KEPT = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)
# The number types `is_valid_number` tries after the general description (any one will do).
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


def e164_if_valid(raw: str, country: str | None) -> str | None:
    """`raw` in E.164 when it is a valid number in a plain written form, else None.

    Stands for `phonenumbers.parse(raw, None if raw.startswith("+") else country)` followed by
    `is_valid_number` and E.164 formatting, when these succeed.
    """
    written = _WRITTEN.fullmatch(raw)
    if written is None or len(raw) > _MAX_INPUT_LENGTH:
        return None
    plus, rest = written.groups()
    digits = rest.translate(_SEPARATORS)
    if len(digits) < _MIN_DIGITS:
        return None
    if plus:
        country_code, national = _extract_country_code(digits)
        if country_code == 0:
            return None
        metadata = _calling_code_metadata(country_code)
    else:
        if country not in SUPPORTED_REGIONS:
            return None
        metadata = PhoneMetadata.metadata_for_region(country)
        if metadata is None:  # pragma: no cover  (every supported region has metadata)
            return None
        idd = metadata.international_prefix
        # An international call prefix, or the country calling code written first: phonenumbers
        # weighs these itself.
        if (idd is not None and _compiled(idd).match(digits)) or digits.startswith(
            str(metadata.country_code)
        ):
            return None
        country_code, national = metadata.country_code or 0, digits
    if metadata is None or country_code == 0 or len(national) < _MIN_LENGTH_FOR_NSN:
        return None
    _, stripped, _ = _maybe_strip_national_prefix_carrier_code(national, metadata)
    if stripped != national and _test_number_length(stripped, metadata) not in _PREFIX_KEPT:
        national = stripped
    if not _MIN_LENGTH_FOR_NSN <= len(national) <= _MAX_LENGTH_FOR_NSN:
        return None
    if not _valid(country_code, national):
        return None
    # The national significant number phonenumbers formats is this string (leading zeros kept).
    return f"+{country_code}{national}"


def _valid(country_code: int, national: str) -> bool:
    """`phonenumbers.is_valid_number`: the number's region, then a type of that region."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions:
        return False
    if len(regions) == 1:
        return _typed(regions[0], country_code, national)
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if _compiled(metadata.leading_digits).match(national):
                return _typed(region, country_code, national)
        elif _typed(region, country_code, national):
            return True
    return False


def _typed(region: str, country_code: int, national: str) -> bool:
    """The number matches the region's general description and one of its number types."""
    patterns = _patterns(region, country_code, len(national))
    return (
        patterns is not None
        and patterns[0].fullmatch(national) is not None
        and patterns[1].fullmatch(national) is not None
    )


@cache
def _patterns(
    region: str, country_code: int, length: int
) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    """For numbers of `length` digits: the general pattern, and the patterns of every number
    type as one alternation (which matches a whole number when one of them does); None when
    no number of that length can be valid."""
    if region == REGION_CODE_FOR_NON_GEO_ENTITY:
        metadata = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
    else:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if metadata is not None and metadata.country_code != country_code:
            return None  # pragma: no cover  (a region is only tried for its own calling code)
    if metadata is None:
        return None
    general = _pattern(metadata.general_desc, length)
    types = [_pattern(getattr(metadata, name), length) for name in _TYPES]
    alternatives = [f"(?:{pattern})" for pattern in types if pattern is not None]
    if general is None or not alternatives:
        return None
    return re.compile(general), re.compile("|".join(alternatives))


def _pattern(desc: PhoneNumberDesc | None, length: int) -> str | None:
    """The description's pattern, if it can match a number of `length` digits (a description
    without possible lengths has those of the general one)."""
    if desc is None or not desc.national_number_pattern:
        return None
    if desc.possible_length and length not in desc.possible_length:
        return None
    return desc.national_number_pattern


@cache
def _calling_code_metadata(country_code: int) -> PhoneMetadata | None:
    """The metadata `phonenumbers.parse` reads a number after `+` with: its main region's."""
    region = region_code_for_country_code(country_code)
    return PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
