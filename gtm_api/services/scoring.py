"""Scoring models: a versioned, per-tenant definition of how a lead is scored and graded.

A definition is plain JSON (see docs/scoring.md)::

    {"name": "b2b-saas",
     "rules": [{"name": "company", "points": 15, "reason": "Company given",
                "when": [{"field": "company", "op": "present"}]}, ...],
     "grades": {"A": 80, "B": 60, "C": 40},
     "qualified_min_score": 60}

Score = the sum of the points of the rules whose conditions all hold (shared evaluator,
`gtm_api.services.conditions`), clamped to 0..100. Grade = the grade with the highest threshold
≤ score, else `D`. Qualified = score ≥ `qualified_min_score`. Scoring is pure: it reads only the
lead's own fields, never its stage, previous score or grade, so the same lead and model always
give the same result.

A tenant with no installed model scores with `DEFAULT_MODEL` (`model_version` `default-1`);
installed models report `<name>-<version>`. Installing keeps every older version.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from django.db import transaction
from django.db.models import Max, QuerySet

from gtm_api.models import Lead, ScoringModel
from gtm_api.services.conditions import (
    ConditionInvalid,
    condition_describe,
    condition_matches,
    condition_validate,
    lead_facts,
)
from neuronx.models import Tenant

MIN_SCORE, MAX_SCORE = 0, 100
FALLBACK_GRADE = "D"
DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_VERSION = 1
MAX_RULES = 100
MAX_CONDITIONS = 20
MAX_REASON = 200
# Facts that change when a lead is qualified: scoring on them would make re-qualifying drift.
UNSCORABLE_FIELDS = frozenset({"score", "grade", "stage"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_GRADE = re.compile(r"^[A-Z]$")
_TOP_KEYS = ("name", "description", "rules", "grades", "qualified_min_score")
_RULE_KEYS = ("name", "points", "reason", "when")

SENIOR_TITLE_PATTERN = (
    r"\b(chief|vp|svp|evp|vice[ -]president|head|director|founder|co-?founder|owner"
    r"|president|partner|c[eotfm]o)\b"
)
HIGH_INTENT_SOURCES = ["demo_request", "referral", "contact_sales"]

DEFAULT_MODEL: dict[str, Any] = {
    "name": DEFAULT_MODEL_NAME,
    "description": "Built-in model for tenants without one: fit (business contact data, "
    "seniority) plus intent (source). A complete business lead scores at least 75 and qualifies.",
    "rules": [
        {
            "name": "business_email",
            "points": 25,
            "reason": "Business email domain",
            "when": [{"field": "free_email", "op": "eq", "value": False}],
        },
        {
            "name": "company",
            "points": 15,
            "reason": "Company given",
            "when": [{"field": "company", "op": "present"}],
        },
        {
            "name": "job_title",
            "points": 10,
            "reason": "Job title given",
            "when": [{"field": "job_title", "op": "present"}],
        },
        {
            "name": "senior_title",
            "points": 15,
            "reason": "Senior decision-maker title",
            "when": [{"field": "job_title", "op": "matches", "value": SENIOR_TITLE_PATTERN}],
        },
        {
            "name": "phone",
            "points": 15,
            "reason": "Phone number given",
            "when": [{"field": "phone", "op": "present"}],
        },
        {
            "name": "country",
            "points": 10,
            "reason": "Country given",
            "when": [{"field": "country", "op": "present"}],
        },
        {
            "name": "high_intent_source",
            "points": 10,
            "reason": "High-intent source",
            "when": [{"field": "source", "op": "in", "value": HIGH_INTENT_SOURCES}],
        },
    ],
    "grades": {"A": 80, "B": 60, "C": 40},
    "qualified_min_score": 60,
}


class ScoringModelInvalid(ValueError):
    """A scoring model definition is invalid; `path` names the offending part."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Factor:
    """One rule's contribution: the points actually awarded (0 when not met) and why."""

    name: str
    points: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "points": self.points, "reason": self.reason}


@dataclass(frozen=True)
class ScoreResult:
    score: int
    grade: str
    qualified: bool
    factors: tuple[Factor, ...]
    model_version: str


@dataclass(frozen=True)
class ActiveModel:
    """The model a tenant scores with now: its installed active version, or the default."""

    model_version: str
    definition: dict[str, Any]
    installed: ScoringModel | None = None

    @classmethod
    def of(cls, model: ScoringModel) -> "ActiveModel":
        return cls(
            model_version=f"{model.name}-{model.version}",
            definition=scoring_model_validate(model.definition),
            installed=model,
        )


# -- validation ---------------------------------------------------------------------------------


def _int_in(value: Any, path: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ScoringModelInvalid(path, f"must be an integer, not {value!r}.")
    if not low <= value <= high:
        raise ScoringModelInvalid(path, f"must be between {low} and {high}, not {value}.")
    return value


def _text(value: Any, path: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScoringModelInvalid(path, f"must be a non-empty string, not {value!r}.")
    if len(value) > max_length:
        raise ScoringModelInvalid(path, f"must be at most {max_length} characters.")
    return value.strip()


def _keys(value: Mapping[str, Any], path: str, allowed: tuple[str, ...], required: int) -> None:
    """`allowed[:required]` must be present; anything outside `allowed` is an error."""
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ScoringModelInvalid(where, f"unknown key; allowed: {', '.join(allowed)}.")
    for key in allowed[:required]:
        if key not in value:
            raise ScoringModelInvalid(f"{path}.{key}" if path else key, "is required.")


def _condition(value: Any, path: str) -> dict[str, Any]:
    try:
        condition = condition_validate(value)
    except ConditionInvalid as exc:
        raise ScoringModelInvalid(path, str(exc)) from None
    if condition["field"] in UNSCORABLE_FIELDS:
        raise ScoringModelInvalid(
            f"{path}.field",
            f"{condition['field']!r} cannot be scored on: it changes when the lead is qualified, "
            "so re-qualifying would not be deterministic.",
        )
    if (
        condition["field"] == "free_email"
        and condition["op"] in {"eq", "ne"}
        and not isinstance(condition["value"], bool)
    ):
        # `"false"` (a string) would never equal the fact, silently never matching.
        raise ScoringModelInvalid(f"{path}.value", "free_email compares with true or false.")
    return dict(condition)


def _rule(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScoringModelInvalid(path, f"a rule must be an object, not {value!r}.")
    _keys(value, path, _RULE_KEYS, required=4)
    name = value["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ScoringModelInvalid(
            f"{path}.name",
            f"must be 1–64 characters of letters, digits, `_`, `.` or `-`, not {name!r}.",
        )
    when = value["when"]
    if not isinstance(when, list):
        raise ScoringModelInvalid(f"{path}.when", "must be a list of conditions.")
    if len(when) > MAX_CONDITIONS:
        raise ScoringModelInvalid(f"{path}.when", f"at most {MAX_CONDITIONS} conditions.")
    return {
        "name": name,
        "points": _int_in(value["points"], f"{path}.points", -MAX_SCORE, MAX_SCORE),
        "reason": _text(value["reason"], f"{path}.reason", MAX_REASON),
        "when": [_condition(c, f"{path}.when[{i}]") for i, c in enumerate(when)],
    }


def _grades(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise ScoringModelInvalid("grades", 'must be a non-empty object like {"A": 80, "B": 60}.')
    grades: dict[str, int] = {}
    for letter in sorted(value, key=str):
        if not isinstance(letter, str) or not _GRADE.match(letter):
            raise ScoringModelInvalid(f"grades.{letter}", "grade names are single capital letters.")
        grades[letter] = _int_in(value[letter], f"grades.{letter}", MIN_SCORE, MAX_SCORE)
    letters = list(grades)
    for better, worse in pairwise(letters):
        if grades[better] <= grades[worse]:
            raise ScoringModelInvalid(
                f"grades.{worse}",
                f"threshold {grades[worse]} must be below grade {better}'s {grades[better]}: "
                "earlier letters are better grades.",
            )
    return grades


def scoring_model_validate(definition: Any) -> dict[str, Any]:
    """Check a definition and return its normalised form; `ScoringModelInvalid` names the path.

    The name `default` is reserved for the built-in model so `model_version` stays unambiguous.
    """
    if not isinstance(definition, dict):
        raise ScoringModelInvalid("(root)", "a scoring model must be a JSON object.")
    _keys(definition, "", _TOP_KEYS, required=0)
    for key in ("name", "rules", "grades", "qualified_min_score"):
        if key not in definition:
            raise ScoringModelInvalid(key, "is required.")
    name = definition["name"]
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ScoringModelInvalid(
            "name", f"must be 1–100 characters of letters, digits, `_`, `.` or `-`, not {name!r}."
        )
    rules = definition["rules"]
    if not isinstance(rules, list) or not rules:
        raise ScoringModelInvalid("rules", "must be a non-empty list of rules.")
    if len(rules) > MAX_RULES:
        raise ScoringModelInvalid("rules", f"at most {MAX_RULES} rules.")
    checked = [_rule(rule, f"rules[{i}]") for i, rule in enumerate(rules)]
    seen: set[str] = set()
    for i, rule in enumerate(checked):
        if rule["name"] in seen:
            raise ScoringModelInvalid(f"rules[{i}].name", f"duplicate rule name {rule['name']!r}.")
        seen.add(rule["name"])
    normalised: dict[str, Any] = {"name": name}
    if "description" in definition:
        normalised["description"] = _text(definition["description"], "description", 2000)
    normalised["rules"] = checked
    normalised["grades"] = _grades(definition["grades"])
    normalised["qualified_min_score"] = _int_in(
        definition["qualified_min_score"], "qualified_min_score", MIN_SCORE, MAX_SCORE
    )
    return normalised


def _reserved_name(definition: dict[str, Any]) -> None:
    if definition["name"] == DEFAULT_MODEL_NAME:
        raise ScoringModelInvalid(
            "name", f"{DEFAULT_MODEL_NAME!r} is reserved for the built-in model; choose another."
        )


DEFAULT_ACTIVE_MODEL = ActiveModel(
    model_version=f"{DEFAULT_MODEL_NAME}-{DEFAULT_MODEL_VERSION}",
    definition=scoring_model_validate(DEFAULT_MODEL),
)


# -- selectors ----------------------------------------------------------------------------------


def scoring_model_active(*, tenant: Tenant) -> ActiveModel:
    """The tenant's active installed model, or the documented default when it has none."""
    installed = ScoringModel.objects.filter(tenant=tenant, is_active=True).first()
    return DEFAULT_ACTIVE_MODEL if installed is None else ActiveModel.of(installed)


def scoring_model_versions(*, tenant: Tenant) -> QuerySet[ScoringModel]:
    """Every installed version of the tenant's model, newest first."""
    return ScoringModel.objects.filter(tenant=tenant).order_by("-version")


# -- services -----------------------------------------------------------------------------------


@transaction.atomic
def scoring_model_install(*, tenant: Tenant, definition: Any) -> ScoringModel:
    """Validate `definition` and make it the tenant's active model as version max+1.

    Older versions are kept (inactive). Concurrent installs for one tenant are serialised by a
    lock on the tenant row; the database allows one active model per tenant and unique versions.
    Raises `ScoringModelInvalid` and writes nothing when the definition is bad.
    """
    valid = scoring_model_validate(definition)
    _reserved_name(valid)
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    ScoringModel.objects.filter(tenant=tenant, is_active=True).update(is_active=False)
    latest = ScoringModel.objects.filter(tenant=tenant).aggregate(latest=Max("version"))["latest"]
    return ScoringModel.objects.create(
        tenant=tenant,
        version=(latest or 0) + 1,
        name=valid["name"],
        definition=valid,
        is_active=True,
    )


# -- scoring ------------------------------------------------------------------------------------


def _factor(rule: dict[str, Any], facts: dict[str, Any]) -> Factor:
    failed = [c for c in rule["when"] if not condition_matches(c, facts)]
    if not failed:
        return Factor(name=rule["name"], points=rule["points"], reason=rule["reason"])
    unmet = " and ".join(condition_describe(c) for c in failed)
    return Factor(name=rule["name"], points=0, reason=f"Not met: {rule['reason']} ({unmet})")


def score_grade(*, score: int, grades: Mapping[str, int]) -> str:
    """The grade with the highest threshold ≤ `score`, else `D`."""
    reached = [(threshold, letter) for letter, threshold in grades.items() if threshold <= score]
    return max(reached)[1] if reached else FALLBACK_GRADE


def lead_score(*, lead: Lead, model: ActiveModel) -> ScoreResult:
    """Score `lead` with `model`: pure and deterministic, one factor per rule, in rule order.

    Each factor carries the points actually awarded (0 when the rule is not met) and a reason:
    the rule's own when met, `Not met: <reason> (<failed conditions>)` otherwise. The score is
    the sum of the factors' points clamped to 0..100.
    """
    definition = model.definition
    facts = lead_facts(lead)
    factors = tuple(_factor(rule, facts) for rule in definition["rules"])
    score = min(MAX_SCORE, max(MIN_SCORE, sum(f.points for f in factors)))
    return ScoreResult(
        score=score,
        grade=score_grade(score=score, grades=definition["grades"]),
        qualified=score >= definition["qualified_min_score"],
        factors=factors,
        model_version=model.model_version,
    )
