"""Conditions on lead facts, shared by scoring models and routing rules.

A condition is `{"field": "country", "op": "in", "value": ["GB", "IE"]}`. Fields are lead fields,
`email_domain`, `free_email`, `score`, `grade` and `attributes.<key>`. Ops: eq, ne, in, not_in,
present, absent, contains (case-insensitive substring), matches (case-insensitive regex), gt,
gte, lt, lte. Evaluation is pure and deterministic.
"""

import json
import re
from typing import Any

from gtm_api.models import Lead

FREE_EMAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "zoho.com",
        "qq.com",
        "163.com",
        "126.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
        "orange.fr",
        "free.fr",
        "libero.it",
    }
)

LEAD_FIELDS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "country",
    "source",
    "stage",
)
DERIVED_FIELDS = ("email_domain", "free_email", "score", "grade")
OPS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "present",
    "absent",
    "contains",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
)
_VALUELESS = {"present", "absent"}


class ConditionInvalid(ValueError):
    pass


def lead_facts(lead: Lead, *, score: int | None = None, grade: str | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {name: getattr(lead, name) for name in LEAD_FIELDS}
    domain = lead.email.rsplit("@", 1)[1] if lead.email else None
    facts["email_domain"] = domain
    facts["free_email"] = domain in FREE_EMAIL_DOMAINS if domain else None
    facts["score"] = score if score is not None else lead.score
    facts["grade"] = grade
    for key, value in (lead.attributes or {}).items():
        facts[f"attributes.{key}"] = value
    return facts


def condition_validate(condition: Any) -> dict[str, Any]:
    if not isinstance(condition, dict):
        raise ConditionInvalid(f"A condition must be an object, not {condition!r}.")
    unknown = set(condition) - {"field", "op", "value"}
    if unknown:
        raise ConditionInvalid(f"Unknown condition keys {sorted(unknown)}.")
    field, op = condition.get("field"), condition.get("op")
    if not isinstance(field, str) or not (
        field in LEAD_FIELDS or field in DERIVED_FIELDS or field.startswith("attributes.")
    ):
        raise ConditionInvalid(f"Unknown condition field {field!r}.")
    if op not in OPS:
        raise ConditionInvalid(f"Unknown op {op!r}; use one of {', '.join(OPS)}.")
    if op not in _VALUELESS and "value" not in condition:
        raise ConditionInvalid(f"Op {op!r} needs a value.")
    value = condition.get("value")
    if op in {"in", "not_in"} and (
        not isinstance(value, list) or any(isinstance(v, list | dict) for v in value)
    ):
        raise ConditionInvalid(f"Op {op!r} needs a list of plain values.")
    if op in {"gt", "gte", "lt", "lte"} and (
        not isinstance(value, int | float) or isinstance(value, bool)
    ):
        raise ConditionInvalid(f"Op {op!r} needs a number.")
    if op == "matches":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise ConditionInvalid(f"Bad regular expression {value!r}: {exc}.") from None
    return condition


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def condition_matches(condition: dict[str, Any], facts: dict[str, Any]) -> bool:
    op = condition["op"]
    actual = facts.get(condition["field"])
    expected: Any = condition.get("value")
    if op == "present":
        return actual not in (None, "")
    if op == "absent":
        return actual in (None, "")
    if actual is None:
        return op in {"ne", "not_in"}
    if op == "eq":
        return bool(_fold(actual) == _fold(expected))
    if op == "ne":
        return bool(_fold(actual) != _fold(expected))
    if op == "in":
        return _fold(actual) in {_fold(v) for v in expected}
    if op == "not_in":
        return _fold(actual) not in {_fold(v) for v in expected}
    if op == "contains":
        return str(expected).casefold() in str(actual).casefold()
    if op == "matches":
        return re.search(str(expected), str(actual), re.IGNORECASE) is not None
    if not isinstance(actual, int | float) or isinstance(actual, bool):
        return False
    return {
        "gt": actual > expected,
        "gte": actual >= expected,
        "lt": actual < expected,
        "lte": actual <= expected,
    }[op]


def conditions_match(conditions: list[dict[str, Any]], facts: dict[str, Any]) -> bool:
    """All conditions hold (an empty list always holds)."""
    return all(condition_matches(c, facts) for c in conditions)


def condition_describe(condition: dict[str, Any]) -> str:
    """Human-readable, with values in JSON spelling (`false`, `["GB"]`), as clients read them."""
    if condition["op"] in _VALUELESS:
        return f"{condition['field']} {condition['op']}"
    return f"{condition['field']} {condition['op']} {json.dumps(condition['value'])}"
