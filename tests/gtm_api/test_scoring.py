"""Scoring models: the default model, validation, versioned installs, the command and the docs."""

import copy
import json
import re
import threading
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from gtm_api.models import Lead, ScoringModel
from gtm_api.services.scoring import (
    DEFAULT_ACTIVE_MODEL,
    DEFAULT_MODEL,
    ActiveModel,
    ScoringModelInvalid,
    lead_score,
    score_grade,
    scoring_model_active,
    scoring_model_install,
    scoring_model_validate,
)
from tests.factories import TenantFactory

DOCS = Path(settings.BASE_DIR) / "docs" / "scoring.md"


def make_lead(**fields: Any) -> Lead:
    """An unsaved lead: scoring reads only the lead's own fields."""
    values: dict[str, Any] = {
        "email": "ada@analytical-engines.com",
        "phone": "+442079460958",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "job_title": "Software Engineer",
        "country": "GB",
        "source": "web_form",
        "attributes": {},
    }
    values.update(fields)
    return Lead(**values)


def default_score(**fields: Any):
    return lead_score(lead=make_lead(**fields), model=DEFAULT_ACTIVE_MODEL)


def model(**overrides: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": "acme",
        "rules": [
            {
                "name": "company",
                "points": 40,
                "reason": "Company given",
                "when": [{"field": "company", "op": "present"}],
            },
            {
                "name": "uk",
                "points": 30,
                "reason": "Based in the UK",
                "when": [{"field": "country", "op": "eq", "value": "GB"}],
            },
        ],
        "grades": {"A": 70, "B": 40},
        "qualified_min_score": 50,
    }
    definition.update(overrides)
    return definition


# -- the default model --------------------------------------------------------------------------


def test_the_default_model_is_valid_and_reports_default_1():
    default = DEFAULT_ACTIVE_MODEL
    assert default.model_version == "default-1"
    assert default.installed is None
    assert scoring_model_validate(DEFAULT_MODEL) == default.definition
    assert sum(rule["points"] for rule in DEFAULT_MODEL["rules"]) == 100


@pytest.mark.parametrize(
    ("fields", "score", "grade", "qualified"),
    [
        ({}, 75, "B", True),  # a complete business lead qualifies
        ({"job_title": "VP Sales"}, 90, "A", True),
        ({"job_title": "Chief Revenue Officer", "source": "demo_request"}, 100, "A", True),
        ({"email": "ada@gmail.com", "company": None}, 35, "D", False),
        ({"email": "ada@gmail.com", "company": None, "job_title": "CEO"}, 50, "C", False),
        ({"email": None, "company": None, "job_title": None, "country": None}, 15, "D", False),
        ({"phone": None, "country": None, "job_title": None}, 40, "C", False),
        ({"source": "referral"}, 85, "A", True),
    ],
)
def test_default_model_scores(fields, score, grade, qualified):
    result = default_score(**fields)
    assert (result.score, result.grade, result.qualified) == (score, grade, qualified)
    assert len(result.factors) == 7
    assert sum(f.points for f in result.factors) == result.score
    assert result.model_version == "default-1"


@pytest.mark.parametrize(
    "title",
    [
        "Chief Revenue Officer",
        "VP Sales",
        "SVP Marketing",
        "Vice President, Operations",
        "Vice-President",
        "Head of Growth",
        "Director of IT",
        "Founder",
        "Co-Founder & CTO",
        "Owner",
        "President",
        "Managing Partner",
        "CEO",
        "cfo",
        "CMO",
        "COO",
    ],
)
def test_senior_titles_earn_the_seniority_points(title):
    factor = {f.name: f for f in default_score(job_title=title).factors}["senior_title"]
    assert factor.points == 15, title


@pytest.mark.parametrize(
    "title", ["Software Engineer", "Headhunter", "Coordinator", "Account Executive", "Intern"]
)
def test_other_titles_do_not(title):
    factor = {f.name: f for f in default_score(job_title=title).factors}["senior_title"]
    assert factor.points == 0
    assert factor.reason.startswith("Not met: Senior decision-maker title (job_title matches ")


def test_every_factor_explains_itself():
    result = default_score(email="ada@gmail.com", phone=None)
    by_name = {f.name: f for f in result.factors}
    assert [f.name for f in result.factors] == [r["name"] for r in DEFAULT_MODEL["rules"]]
    assert by_name["company"].reason == "Company given"
    assert by_name["phone"].as_dict() == {
        "name": "phone",
        "points": 0,
        "reason": "Not met: Phone number given (phone present)",
    }
    assert by_name["business_email"].reason == (
        "Not met: Business email domain (free_email eq false)"
    )
    for factor in result.factors:
        assert factor.name and factor.reason and isinstance(factor.points, int)


def test_scoring_is_pure_and_deterministic():
    # No django_db mark: any query would raise, so this also proves scoring reads no database.
    lead = make_lead(job_title="Director", attributes={"employees": 600})
    default = DEFAULT_ACTIVE_MODEL
    results = [lead_score(lead=lead, model=default) for _ in range(5)]
    assert all(r == results[0] for r in results)
    # The lead's previous outcome does not feed back into its score.
    lead.score, lead.stage = 12, "disqualified"
    assert lead_score(lead=lead, model=default) == results[0]


# -- rules, clamping and grades -----------------------------------------------------------------


def test_unmet_reasons_name_only_the_failed_conditions():
    definition = model(
        rules=[
            {
                "name": "uk_company",
                "points": 50,
                "reason": "UK company",
                "when": [
                    {"field": "country", "op": "eq", "value": "GB"},
                    {"field": "company", "op": "present"},
                    {"field": "attributes.employees", "op": "gte", "value": 100},
                ],
            }
        ]
    )
    active = ActiveModel(model_version="acme-1", definition=scoring_model_validate(definition))
    [factor] = lead_score(lead=make_lead(company=None), model=active).factors
    assert factor.reason == (
        "Not met: UK company (company present and attributes.employees gte 100)"
    )
    [factor] = lead_score(lead=make_lead(attributes={"employees": 250}), model=active).factors
    assert (factor.points, factor.reason) == (50, "UK company")


def test_negative_points_and_clamping():
    definition = model(
        rules=[
            {"name": "base", "points": 100, "reason": "Everyone", "when": []},
            {
                "name": "bonus",
                "points": 50,
                "reason": "UK",
                "when": [{"field": "country", "op": "eq", "value": "GB"}],
            },
            {
                "name": "free_mail",
                "points": -100,
                "reason": "Free mail",
                "when": [{"field": "free_email", "op": "eq", "value": True}],
            },
            {
                "name": "no_phone",
                "points": -100,
                "reason": "No phone",
                "when": [{"field": "phone", "op": "absent"}],
            },
        ]
    )
    active = ActiveModel(model_version="acme-1", definition=scoring_model_validate(definition))
    high = lead_score(lead=make_lead(), model=active)
    assert (high.score, [f.points for f in high.factors]) == (100, [100, 50, 0, 0])
    low = lead_score(lead=make_lead(email="x@gmail.com", phone=None), model=active)
    assert (low.score, [f.points for f in low.factors]) == (0, [100, 50, -100, -100])
    assert (low.grade, low.qualified) == ("D", False)


@pytest.mark.parametrize(
    ("score", "grade"),
    [(100, "A"), (80, "A"), (79, "B"), (60, "B"), (40, "C"), (39, "D"), (0, "D")],
)
def test_grade_is_the_highest_threshold_reached(score, grade):
    assert score_grade(score=score, grades={"A": 80, "B": 60, "C": 40}) == grade


# -- validation ---------------------------------------------------------------------------------


def _rule(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": "r",
        "points": 10,
        "reason": "Why",
        "when": [{"field": "company", "op": "present"}],
    }
    rule.update(overrides)
    return rule


def _without(key: str) -> dict[str, Any]:
    definition = model()
    del definition[key]
    return definition


@pytest.mark.parametrize(
    ("definition", "path", "message"),
    [
        (["not", "an", "object"], "(root)", "must be a JSON object"),
        (_without("name"), "name", "is required"),
        (_without("rules"), "rules", "is required"),
        (_without("grades"), "grades", "is required"),
        (_without("qualified_min_score"), "qualified_min_score", "is required"),
        (model(threshold=50), "threshold", "unknown key"),
        (model(name="has spaces"), "name", "letters, digits"),
        (model(name=""), "name", "letters, digits"),
        (model(rules=[]), "rules", "non-empty list"),
        (model(rules={"r": 1}), "rules", "non-empty list"),
        (model(rules=["company"]), "rules[0]", "must be an object"),
        (model(rules=[_rule(points="10")]), "rules[0].points", "must be an integer, not '10'"),
        (model(rules=[_rule(points=True)]), "rules[0].points", "must be an integer"),
        (model(rules=[_rule(points=2.5)]), "rules[0].points", "must be an integer"),
        (model(rules=[_rule(points=101)]), "rules[0].points", "between -100 and 100"),
        (model(rules=[_rule(), _rule(name="s", reason="")]), "rules[1].reason", "non-empty"),
        (model(rules=[_rule(name="bad name")]), "rules[0].name", "letters, digits"),
        (model(rules=[_rule(), _rule()]), "rules[1].name", "duplicate rule name 'r'"),
        (model(rules=[_rule(weight=2)]), "rules[0].weight", "unknown key"),
        (model(rules=[{"name": "r", "points": 1, "when": []}]), "rules[0].reason", "required"),
        (model(rules=[_rule(when={"field": "company"})]), "rules[0].when", "must be a list"),
        (
            model(rules=[_rule(when=[{"field": "company", "op": "equals", "value": "x"}])]),
            "rules[0].when[0]",
            "Unknown op 'equals'",
        ),
        (
            model(rules=[_rule(when=[{"field": "salary", "op": "present"}])]),
            "rules[0].when[0]",
            "Unknown condition field 'salary'",
        ),
        (
            model(rules=[_rule(when=[{"field": "job_title", "op": "matches", "value": "("}])]),
            "rules[0].when[0]",
            "Bad regular expression",
        ),
        (
            model(rules=[_rule(when=[{"field": "country", "op": "in", "value": "GB"}])]),
            "rules[0].when[0]",
            "needs a list of plain values",
        ),
        (
            model(
                rules=[_rule(), _rule(name="s", when=[{"field": "score", "op": "gt", "value": 5}])]
            ),
            "rules[1].when[0].field",
            "cannot be scored on",
        ),
        (
            model(rules=[_rule(when=[{"field": "stage", "op": "eq", "value": "new"}])]),
            "rules[0].when[0].field",
            "cannot be scored on",
        ),
        (
            model(rules=[_rule(when=[{"field": "free_email", "op": "eq", "value": "false"}])]),
            "rules[0].when[0].value",
            "true or false",
        ),
        (model(grades={}), "grades", "non-empty object"),
        (model(grades={"a": 80}), "grades.a", "single capital letters"),
        (model(grades={"AA": 80}), "grades.AA", "single capital letters"),
        (model(grades={"A": 101}), "grades.A", "between 0 and 100"),
        (model(grades={"A": 60, "B": 80}), "grades.B", "must be below grade A's 60"),
        (model(grades={"A": 60, "B": 60}), "grades.B", "must be below"),
        (model(qualified_min_score=-1), "qualified_min_score", "between 0 and 100"),
        (model(qualified_min_score="60"), "qualified_min_score", "must be an integer"),
        (model(description=""), "description", "non-empty"),
    ],
)
def test_invalid_definitions_name_the_bad_path(definition, path, message):
    with pytest.raises(ScoringModelInvalid) as failure:
        scoring_model_validate(definition)
    assert failure.value.path == path
    assert message in failure.value.message
    assert str(failure.value).startswith(f"{path}: ")
    assert isinstance(failure.value, ValueError)


def test_validation_normalises_and_does_not_change_its_input():
    definition = model(description="  Acme  ")
    before = copy.deepcopy(definition)
    valid = scoring_model_validate(definition)
    assert definition == before
    assert valid["description"] == "Acme"
    assert list(valid) == ["name", "description", "rules", "grades", "qualified_min_score"]


# -- installing versions ------------------------------------------------------------------------


@pytest.mark.django_db
def test_installing_creates_versions_and_keeps_the_old_ones():
    tenant, other = TenantFactory(slug="alice"), TenantFactory(slug="bob")
    assert scoring_model_active(tenant=tenant).model_version == "default-1"

    first = scoring_model_install(tenant=tenant, definition=model())
    assert (first.version, first.is_active) == (1, True)
    assert scoring_model_active(tenant=tenant).model_version == "acme-1"

    second = scoring_model_install(tenant=tenant, definition=model(name="acme-v2"))
    first.refresh_from_db()
    assert (second.version, second.is_active, first.is_active) == (2, True, False)
    active = scoring_model_active(tenant=tenant)
    assert (active.model_version, active.installed) == ("acme-v2-2", second)
    assert ScoringModel.objects.filter(tenant=tenant).count() == 2

    # Another tenant's versions are its own.
    assert scoring_model_active(tenant=other).model_version == "default-1"
    assert scoring_model_install(tenant=other, definition=model()).version == 1


@pytest.mark.django_db
def test_an_invalid_install_writes_nothing_and_keeps_the_active_model():
    tenant = TenantFactory(slug="alice")
    scoring_model_install(tenant=tenant, definition=model())
    with pytest.raises(ScoringModelInvalid):
        scoring_model_install(tenant=tenant, definition=model(qualified_min_score=500))
    assert list(ScoringModel.objects.values_list("version", "is_active")) == [(1, True)]


@pytest.mark.django_db
def test_the_default_name_is_reserved():
    with pytest.raises(ScoringModelInvalid, match="reserved"):
        scoring_model_install(tenant=TenantFactory(slug="alice"), definition=DEFAULT_MODEL)
    assert not ScoringModel.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_installs_get_distinct_versions_and_one_active_model():
    tenant = TenantFactory(slug="alice")
    count = 6
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            scoring_model_install(tenant=tenant, definition=model(name=f"acme-{index}"))
        except BaseException as exc:  # reported below, not swallowed
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    versions = ScoringModel.objects.filter(tenant=tenant)
    assert sorted(versions.values_list("version", flat=True)) == list(range(1, count + 1))
    assert versions.filter(is_active=True).get().version == count


# -- the command --------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("install_scoring_model", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_command_installs_json_and_prints_the_version_last(tmp_path):
    TenantFactory(slug="acme")
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model()))
    assert run("acme", str(path)).splitlines()[-1] == "1"
    assert run("acme", str(path)).splitlines()[-1] == "2"
    assert list(ScoringModel.objects.order_by("version").values_list("version", "is_active")) == [
        (1, False),
        (2, True),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_command_reads_yaml(tmp_path, suffix):
    TenantFactory(slug="acme")
    path = tmp_path / f"model{suffix}"
    path.write_text(
        "name: acme-yaml\n"
        "rules:\n"
        "  - name: company\n"
        "    points: 60\n"
        "    reason: Company given\n"
        "    when: [{field: company, op: present}]\n"
        "grades: {A: 60}\n"
        "qualified_min_score: 60\n"
    )
    assert run("acme", str(path)).splitlines()[-1] == "1"
    assert ScoringModel.objects.get().definition["rules"][0]["points"] == 60


@pytest.mark.django_db
@pytest.mark.django_db
def test_command_show_prints_the_default_then_the_installed_model(tmp_path):
    TenantFactory(slug="acme")
    shown = json.loads(run("acme", "--show"))
    assert (shown["model_version"], shown["source"], shown["versions"]) == (
        "default-1",
        "default",
        [],
    )
    assert shown["definition"] == scoring_model_validate(DEFAULT_MODEL)

    path = tmp_path / "model.json"
    path.write_text(json.dumps(model()))
    run("acme", str(path))
    shown = json.loads(run("acme", "--show"))
    assert (shown["model_version"], shown["source"]) == ("acme-1", "installed")
    assert shown["versions"] == [{"version": 1, "name": "acme", "is_active": True}]
    assert shown["definition"] == scoring_model_validate(model())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"name": "acme",', r"not valid JSON: .* at line 1 column \d+"),
        (json.dumps(model(rules=[_rule(points="10")])), r"at rules\[0\]\.points: must be an"),
        (json.dumps(model(grades={"A": 10, "B": 20})), r"at grades\.B: threshold 20"),
        (json.dumps(DEFAULT_MODEL), r"at name: 'default' is reserved"),
        ("[1, 2]", r"at \(root\): a scoring model must be a JSON object"),
    ],
)
def test_command_errors_are_precise_and_install_nothing(tmp_path, content, message):
    TenantFactory(slug="acme")
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("acme", str(path))
    assert not ScoringModel.objects.exists()


@pytest.mark.django_db
def test_command_argument_errors(tmp_path):
    TenantFactory(slug="acme")
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model()))
    with pytest.raises(CommandError, match="No tenant 'nobody'"):
        run("nobody", str(path))
    with pytest.raises(CommandError, match="Cannot read"):
        run("acme", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="Give the definition file"):
        run("acme")
    with pytest.raises(CommandError, match="not both"):
        run("acme", str(path), "--show")
    assert not ScoringModel.objects.exists()


# -- the docs cannot drift ----------------------------------------------------------------------


def test_docs_default_model_table_matches_the_code():
    text = DOCS.read_text(encoding="utf-8")
    for rule in DEFAULT_MODEL["rules"]:
        row = f"| `{rule['name']}` | {rule['points']:+d} |"
        assert row in text, row
        assert f"| {rule['reason']} |" in text, rule["reason"]
    grades = ", ".join(f"`{g}` ≥ {t}" for g, t in DEFAULT_MODEL["grades"].items())
    assert f"Grades: {grades}, else `D`" in text
    assert f"Qualified when `score` ≥ {DEFAULT_MODEL['qualified_min_score']}" in text


def test_docs_examples_are_valid():
    text = DOCS.read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)]
    [example_model] = [b for b in blocks if "rules" in b]
    scoring_model_validate(example_model)
    [response] = [b for b in blocks if "factors" in b]
    assert [f["name"] for f in response["factors"]] == [r["name"] for r in DEFAULT_MODEL["rules"]]
    assert sum(f["points"] for f in response["factors"]) == response["score"]
    yaml = pytest.importorskip("yaml")
    [yaml_block] = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    scoring_model_validate(yaml.safe_load(yaml_block))
