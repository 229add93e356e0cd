"""`normalize_phone` answers exactly what phonenumbers answers, though it mostly skips its parser.

`gtm_api.phones.e164_if_valid` handles the common written forms of a valid number itself; the
reference below is the plain phonenumbers implementation (parse, is_valid_number, E.164). Both
are compared — values and errors — over the example numbers of every region and number type,
written in each format, altered digit by digit, read with several default countries, and over
random digit strings.
"""

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from gtm_api.lead_fields import FieldInvalid, normalize_phone
from gtm_api.phones import e164_if_valid

COUNTRIES = (None, "US", "DE")
FORMATS = (PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL)
RANDOM_COUNTRIES = ("FR", "BR", "AR", "MX", "CN", "IN", "RU", "AU", "IL", "JE", "SG", "JP")
TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
)


def reference(value: str, country: str | None) -> tuple[str, str]:
    """`normalize_phone` as phonenumbers alone answers it: ("ok", E.164) or (code, message)."""
    raw = value.strip()
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else country)
    except phonenumbers.NumberParseException:
        hint = "" if raw.startswith("+") or country else " (give it in +E.164 form or set country)"
        return "invalid_phone", f"{value!r} is not a phone number{hint}."
    if not phonenumbers.is_valid_number(number):
        return "invalid_phone", f"{value!r} is not a valid phone number."
    return "ok", phonenumbers.format_number(number, PhoneNumberFormat.E164)


def answer(value: str, country: str | None) -> tuple[str, str]:
    try:
        return "ok", normalize_phone(value, country)
    except FieldInvalid as exc:
        return exc.code, exc.message


def variants(number: phonenumbers.PhoneNumber) -> list[phonenumbers.PhoneNumber]:
    """The number, and numbers a digit away from it (mostly invalid, some valid elsewhere)."""
    national = phonenumbers.national_significant_number(number)
    changed = [
        national,
        national[:-1] + str((int(national[-1]) + 1) % 10),
        national + "5",
        national[:-1],
        str((int(national[0]) + 3) % 10) + national[1:],
        "0" + national,
    ]
    found = []
    for digits in changed:
        if not digits:
            continue
        other = phonenumbers.PhoneNumber(
            country_code=number.country_code, national_number=int(digits)
        )
        phonenumbers.phonenumberutil._set_italian_leading_zeros_for_phone_number(digits, other)
        found.append(other)
    return found


def written_forms() -> list[tuple[str, tuple[str | None, ...]]]:
    """(written number, default countries to read it with) for every example number and its
    variants, in each format and with the prefixes people write before a national number."""
    examples: list[tuple[phonenumbers.PhoneNumber | None, str | None]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            examples.append((phonenumbers.example_number_for_type(region, kind), region))
        examples.append((phonenumbers.invalid_example_number(region), region))
    for calling_code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        examples.append((phonenumbers.example_number_for_non_geo_entity(calling_code), None))
    forms: set[tuple[str, tuple[str | None, ...]]] = set()
    for example, home in examples:
        if example is None:
            continue
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(home or "", None)
        national_prefix = (metadata and metadata.national_prefix) or ""
        code = str(example.country_code)
        prefixes = ("", code, national_prefix, f"00{code}", f"011{code}", code + national_prefix)
        for number in variants(example):
            for fmt in FORMATS:
                forms.add((phonenumbers.format_number(number, fmt), (home, *COUNTRIES)))
            national = phonenumbers.national_significant_number(number)
            for prefix in prefixes:
                forms.add((prefix + national, (home,)))
                forms.add((f"+{prefix}{national}", (None,)))
    # A number written with `+` is read without the default country.
    return sorted(
        ((form, (None,) if form.startswith("+") else countries) for form, countries in forms),
        key=str,
    )


FORMS = written_forms()


def test_example_numbers_of_every_region_get_phonenumbers_answer():
    compared = 0
    for form, countries in FORMS:
        for country in countries:
            assert answer(form, country) == reference(form, country), (form, country)
            compared += 1
    assert compared > 50_000


def test_the_fast_path_answers_for_most_valid_numbers_in_plain_forms():
    valid = fast = 0
    for form, _ in FORMS:
        if not form.startswith("+") or reference(form, None)[0] != "ok":
            continue
        valid += 1
        fast += e164_if_valid(form, None) is not None
    # The rest are numbers phonenumbers reads specially (e.g. with a national prefix kept).
    assert valid > 2_000
    assert fast / valid > 0.95


@pytest.mark.parametrize(
    "written, country, expected",
    [
        ("+1 (646) 320-8117", None, "+16463208117"),
        ("+44 20 7946 0582", None, "+442079460582"),
        ("+44 (0) 20 7946 0582", None, "+442079460582"),  # the national prefix, dropped
        ("030 4837993", "DE", "+49304837993"),
        ("(030) 483-7993", "DE", "+49304837993"),
        ("+33 1.70.15.46.45", None, "+33170154645"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("02 1234 5678", "IT", "+390212345678"),  # Italy keeps the leading zero
        ("+39 02 1234 5678", None, "+390212345678"),
    ],
)
def test_common_forms_are_answered_by_the_fast_path(written, country, expected):
    assert e164_if_valid(written, country) == expected
    assert reference(written, country) == ("ok", expected)


@pytest.mark.parametrize(
    "written, country",
    [
        ("0049 30 4837993", "DE"),  # an international call prefix
        ("49 30 4837993", "DE"),  # the country calling code without `+`
        ("+1 646 320 8117 ext. 12", None),  # an extension
        ("1-800-FLOWERS", "US"),  # letters
        ("+1 555 0100", None),  # invalid: phonenumbers words the error
        ("030 4837993", None),  # no country
        ("030 4837993", "de"),  # not a region phonenumbers knows (lower case)
        ("12", "DE"),  # two digits
    ],
)
def test_other_forms_are_left_to_phonenumbers(written, country):
    assert e164_if_valid(written, country) is None
    assert answer(written, country) == reference(written, country)


def test_random_digit_strings_get_phonenumbers_answer():
    rng = random.Random(20261128)
    separators = [" ", "-", ".", "(", ")", ""]
    starts = ["+", "", "0", "00", "011", "+0", "+1", "+44", "+49", "+39", "+7", "+86", "+800"]
    for _ in range(10_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        written = rng.choice(starts)
        for digit in digits:
            written += rng.choice(separators) if rng.random() < 0.3 else ""
            written += digit
        for country in (rng.choice(COUNTRIES), rng.choice(RANDOM_COUNTRIES)):
            assert answer(written, country) == reference(written, country), (written, country)
