"""Routing services and commands: configuration, rules, strategies, install_routing, seed_demo."""

import json
from collections import Counter
from io import StringIO
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.test import Client

from gtm_api.models import Assignment, Lead, Qualification, Rep, RoutingRule, Team
from gtm_api.services.routing import (
    RoutingConfigInvalid,
    lead_route,
    routing_config_get,
    routing_config_install,
    routing_config_validate,
)
from neuronx import errors
from neuronx.context import Actor
from neuronx.models import Tenant
from tests.conftest import Api
from tests.factories import LeadFactory, TenantFactory

pytestmark = pytest.mark.django_db


# -- helpers (also used by test_routing_api.py) ------------------------------------------------


def rep(key: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "name": key.title(), **fields}


def team(key: str, *reps: str | dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "name": f"Team {key}",
        "reps": [rep(r) if isinstance(r, str) else r for r in reps],
    }


def rule(
    name: str, team_key: str, strategy: str = "round_robin", when: list | None = None
) -> dict[str, Any]:
    return {"name": name, "when": when or [], "team": team_key, "strategy": strategy}


def config(
    teams: list[dict[str, Any]], rules: list[dict[str, Any]], fallback: dict | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"teams": teams, "rules": rules}
    if fallback is not None:
        body["fallback"] = fallback
    return body


def round_robin(tenant: Tenant, *keys: str, **rep_fields: Any) -> None:
    """Install one team `inbound` of `keys` and a catch-all round-robin rule."""
    routing_config_install(
        tenant=tenant,
        config=config(
            [team("inbound", *(rep(k, **rep_fields) for k in keys))],
            [rule("catch-all", "inbound")],
        ),
    )


def qualified_lead(
    tenant: Tenant, *, grade: str | None = None, score: int = 70, **fields: Any
) -> Lead:
    lead = LeadFactory(tenant=tenant, stage="qualified", score=score, **fields)
    if grade is not None:
        Qualification.objects.create(
            tenant=tenant,
            lead=lead,
            score=score,
            qualified=True,
            grade=grade,
            factors=[],
            model_version="test v1",
        )
    return lead


def route(tenant: Tenant, lead: Lead) -> Assignment:
    return lead_route(actor=Actor.system(tenant, "test"), lead_id=lead.id)


def owners(tenant: Tenant, count: int, **lead_fields: Any) -> list[str]:
    return [route(tenant, qualified_lead(tenant, **lead_fields)).owner for _ in range(count)]


def load(tenant: Tenant, key: str) -> int:
    return Rep.objects.get(tenant=tenant, key=key).load


@pytest.fixture
def acme(db: None) -> Tenant:
    return TenantFactory(slug="acme")


# -- configuration: validation -----------------------------------------------------------------


GOOD = config(
    [team("inbound", "ada", "bob"), team("enterprise", rep("eve", weight=3, capacity=5))],
    [rule("big", "enterprise", "weighted", [{"field": "grade", "op": "eq", "value": "A"}])],
    {"team": "inbound", "strategy": "round_robin"},
)


def test_validate_fills_in_defaults():
    valid = routing_config_validate(GOOD)
    assert valid["teams"][0]["reps"][0] == {
        "key": "ada",
        "name": "Ada",
        "email": "",
        "weight": 1,
        "capacity": None,
        "active": True,
    }
    assert valid["fallback"] == {"team": "inbound", "strategy": "round_robin"}


def _with(path: list, value: Any) -> dict[str, Any]:
    broken = json.loads(json.dumps(GOOD))
    target = broken
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    elif isinstance(target, list) and path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (["not", "an", "object"], "config: must be an object, not list"),
        (_with(["teams"], ...), "config: missing key(s) 'teams'"),
        (_with(["colour"], "red"), "config: unknown key(s) 'colour'"),
        (_with(["teams"], {}), "teams: must be a list"),
        (_with(["teams", 1, "key"], "inbound"), "teams[1].key: duplicate team key 'inbound'"),
        (_with(["teams", 0, "key"], "in bound"), "teams[0].key: 'in bound' is not a key"),
        (_with(["teams", 0, "reps"], []), "teams[0].reps: a team needs at least one rep"),
        (_with(["teams", 0, "name"], " "), "teams[0].name: must be a non-empty string"),
        (_with(["teams", 0, "reps", 1, "key"], "ada"), "teams[0].reps[1].key: duplicate rep key"),
        (_with(["teams", 0, "reps", 0, "weight"], 0), "teams[0].reps[0].weight: must be an integ"),
        (_with(["teams", 0, "reps", 0, "weight"], True), "teams[0].reps[0].weight: must be an"),
        (_with(["teams", 0, "reps", 0, "capacity"], -1), "teams[0].reps[0].capacity: must be an"),
        (_with(["teams", 0, "reps", 0, "active"], "yes"), "teams[0].reps[0].active: must be true"),
        (_with(["teams", 0, "reps", 0, "email"], "ada"), "teams[0].reps[0].email: 'ada' is not an"),
        (_with(["teams", 0, "reps", 0, "boss"], "x"), "teams[0].reps[0]: unknown key(s) 'boss'"),
        (_with(["rules", 0, "team"], "sales"), "rules[0].team: unknown team 'sales'"),
        (_with(["rules", 0, "strategy"], "random"), "rules[0].strategy: unknown strategy 'random'"),
        (_with(["rules", 0, "when"], ...), "rules[0]: missing key(s) 'when'"),
        (_with(["rules", 0, "name"], "fallback"), "rules[0].name: 'fallback' is reserved"),
        (
            _with(["rules", 0, "when", 0], {"field": "grade", "op": "like", "value": "A"}),
            "rules[0].when[0]: Unknown op 'like'",
        ),
        (
            _with(["rules", 0, "when", 0], {"field": "salary", "op": "gt", "value": 1}),
            "rules[0].when[0]: Unknown condition field 'salary'",
        ),
        (
            _with(["rules", 0, "when", 0], {"field": "country", "op": "in", "value": [["GB"]]}),
            "rules[0].when[0]: Op 'in' needs a list of plain values",
        ),
        (_with(["rules", 1], rule("big", "inbound")), "rules[1].name: duplicate rule name 'big'"),
        (_with(["fallback", "team"], "nobody"), "fallback.team: unknown team 'nobody'"),
        (_with(["fallback", "strategy"], ...), "fallback: missing key(s) 'strategy'"),
    ],
)
def test_validate_names_the_offending_path(broken, message):
    with pytest.raises(RoutingConfigInvalid) as failure:
        routing_config_validate(broken)
    assert str(failure.value).startswith(message), str(failure.value)


# -- configuration: install --------------------------------------------------------------------


def test_install_creates_teams_reps_and_ordered_rules(acme):
    result = routing_config_install(tenant=acme, config=GOOD)
    assert (result.teams, result.rules, result.reps_created) == (2, 1, 3)
    rules = list(RoutingRule.objects.filter(tenant=acme))
    assert [(r.position, r.name, r.team.key, r.is_fallback) for r in rules] == [
        (0, "big", "enterprise", False),
        (1, "fallback", "inbound", True),
    ]
    eve = Rep.objects.get(tenant=acme, key="eve")
    assert (eve.weight, eve.capacity, eve.team.key) == (3, 5, "enterprise")


def test_install_round_trips_through_get(acme):
    routing_config_install(tenant=acme, config=GOOD)
    shown = routing_config_get(tenant=acme)
    assert routing_config_validate(shown) == {
        **routing_config_validate(GOOD),
        "teams": sorted(routing_config_validate(GOOD)["teams"], key=lambda t: t["key"]),
    }
    routing_config_install(tenant=acme, config=shown)
    assert routing_config_get(tenant=acme) == shown


def test_reinstall_keeps_load_and_retires_removed_reps(acme):
    round_robin(acme, "ada", "bob", "cy")
    route(acme, qualified_lead(acme))  # ada now owns a lead
    assert load(acme, "ada") == 1
    result = routing_config_install(
        tenant=acme,
        config=config([team("outbound", "dan")], [rule("all", "outbound")]),
    )
    # ada owns an assignment: deactivated, not deleted (Assignment.rep is PROTECT).
    assert (result.reps_deactivated, result.reps_deleted, result.teams_deleted) == (1, 2, 0)
    assert result.kept_teams == ["inbound"]
    ada = Rep.objects.get(tenant=acme, key="ada")
    assert (ada.is_active, ada.load) == (False, 1)
    assert not Rep.objects.filter(key__in=["bob", "cy"]).exists()

    round_robin(acme, "ada", "bob")  # ada comes back with her load
    ada.refresh_from_db()
    assert (ada.is_active, ada.load) == (True, 1)
    assert not Team.objects.filter(tenant=acme, key="outbound").exists()


def test_invalid_install_changes_nothing(acme):
    round_robin(acme, "ada")
    with pytest.raises(RoutingConfigInvalid):
        routing_config_install(tenant=acme, config=_with(["rules", 0, "team"], "sales"))
    assert [r.name for r in RoutingRule.objects.filter(tenant=acme)] == ["catch-all"]


def test_install_is_tenant_scoped(acme):
    other = TenantFactory(slug="other")
    round_robin(other, "zed")
    round_robin(acme, "ada")
    assert Rep.objects.get(tenant=other).key == "zed"
    assert routing_config_get(tenant=other)["teams"][0]["reps"][0]["key"] == "zed"


# -- rules -------------------------------------------------------------------------------------


RULES = config(
    [team("uk", "ada"), team("enterprise", "eve"), team("partners", "pat"), team("inbound", "ian")],
    [
        rule("uk", "uk", when=[{"field": "country", "op": "in", "value": ["GB", "IE"]}]),
        rule("grade-a", "enterprise", when=[{"field": "grade", "op": "eq", "value": "A"}]),
        rule(
            "partners",
            "partners",
            when=[
                {"field": "attributes.channel", "op": "eq", "value": "partner"},
                {"field": "score", "op": "gte", "value": 50},
            ],
        ),
    ],
    {"team": "inbound", "strategy": "round_robin"},
)


@pytest.mark.parametrize(
    ("lead_fields", "owner", "rule_name"),
    [
        ({"country": "GB", "grade": "A"}, "ada", "uk"),  # first match wins
        ({"country": "US", "grade": "A"}, "eve", "grade-a"),
        ({"country": "US", "grade": "B", "attributes": {"channel": "Partner"}}, "pat", "partners"),
        ({"country": "US", "attributes": {"channel": "partner"}, "score": 40}, "ian", "fallback"),
        ({"country": None}, "ian", "fallback"),
    ],
)
def test_rules_are_tried_in_order_and_first_match_wins(acme, lead_fields, owner, rule_name):
    routing_config_install(tenant=acme, config=RULES)
    assignment = route(acme, qualified_lead(acme, **lead_fields))
    assert (assignment.owner, assignment.rule) == (owner, rule_name)


def test_reason_traces_every_rule_tried(acme):
    routing_config_install(tenant=acme, config=RULES)
    assignment = route(acme, qualified_lead(acme, country="US", grade="A"))
    assert assignment.reason == (
        'rule \'uk\' skipped: country in ["GB", "IE"] not met; '
        "rule 'grade-a' matched → team enterprise, round_robin → eve (turn 1 of 1 active reps)"
    )


def test_grade_is_the_latest_qualifications(acme):
    routing_config_install(tenant=acme, config=RULES)
    lead = qualified_lead(acme, country="US", grade="A")
    Qualification.objects.create(
        tenant=acme, lead=lead, score=55, qualified=True, grade="C", factors=[], model_version="v2"
    )
    assert route(acme, lead).owner == "ian"


def test_no_match_without_fallback_is_routing_not_configured(acme):
    routing_config_install(tenant=acme, config={**RULES, "fallback": None})
    with pytest.raises(errors.RoutingNotConfigured) as failure:
        route(acme, qualified_lead(acme, country="US"))
    assert "rule 'uk' skipped" in failure.value.detail


def test_no_rules_is_routing_not_configured(acme):
    routing_config_install(tenant=acme, config=config([team("inbound", "ada")], []))
    with pytest.raises(errors.RoutingNotConfigured):
        route(acme, qualified_lead(acme))


def test_full_team_overflows_to_the_fallback(acme):
    routing_config_install(
        tenant=acme,
        config=config(
            [team("enterprise", rep("eve", capacity=1)), team("inbound", "ian")],
            [rule("grade-a", "enterprise", when=[{"field": "grade", "op": "eq", "value": "A"}])],
            {"team": "inbound", "strategy": "least_loaded"},
        ),
    )
    assert route(acme, qualified_lead(acme, grade="A")).owner == "eve"
    overflow = route(acme, qualified_lead(acme, grade="A"))
    assert (overflow.owner, overflow.rule, overflow.strategy) == ("ian", "fallback", "least_loaded")
    assert overflow.reason == (
        "rule 'grade-a' matched → team enterprise, no available rep (1 active, at capacity: eve); "
        "fallback → team inbound, least_loaded → ian (load 0/unlimited, the lowest of 1 "
        "available reps)"
    )


def test_full_team_without_fallback_is_no_rep_available(acme):
    round_robin(acme, "ada", "bob", capacity=1)
    owners(acme, 2)
    with pytest.raises(errors.NoRepAvailable) as failure:
        route(acme, qualified_lead(acme))
    assert "no available rep (2 active, at capacity: ada, bob)" in failure.value.detail


# -- strategies --------------------------------------------------------------------------------


def test_round_robin_cycles_in_key_order(acme):
    round_robin(acme, "cy", "ada", "bob")
    assert owners(acme, 7) == ["ada", "bob", "cy", "ada", "bob", "cy", "ada"]


def test_round_robin_skips_inactive_reps_and_reps_at_capacity(acme):
    routing_config_install(
        tenant=acme,
        config=config(
            [team("inbound", "ada", rep("bob", active=False), rep("cy", capacity=1), "dan")],
            [rule("all", "inbound")],
        ),
    )
    assert owners(acme, 5) == ["ada", "cy", "dan", "ada", "dan"]
    last = Assignment.objects.filter(tenant=acme).order_by("-created_at").first()
    assert last is not None
    assert last.reason.endswith("round_robin → dan (turn 3 of 3 active reps; at capacity: cy)")


def test_weighted_three_to_one_gives_three_to_one(acme):
    routing_config_install(
        tenant=acme,
        config=config(
            [team("inbound", rep("ada", weight=3), rep("bob", weight=1))],
            [rule("all", "inbound", "weighted")],
        ),
    )
    picked = owners(acme, 8)
    assert Counter(picked) == {"ada": 6, "bob": 2}
    # Smooth: the light rep is interleaved, never starved behind a burst of the heavy one.
    assert picked == ["ada", "ada", "bob", "ada"] * 2


def test_weighted_skips_reps_at_capacity(acme):
    routing_config_install(
        tenant=acme,
        config=config(
            [team("inbound", rep("ada", weight=3, capacity=2), rep("bob", weight=1))],
            [rule("all", "inbound", "weighted")],
        ),
    )
    assert Counter(owners(acme, 6)) == {"ada": 2, "bob": 4}


def test_least_loaded_respects_capacity_and_skips_inactive_reps(acme):
    routing_config_install(
        tenant=acme,
        config=config(
            [
                team(
                    "inbound",
                    rep("ada", capacity=2),
                    rep("bob", capacity=3),
                    rep("cy", active=False),
                )
            ],
            [rule("all", "inbound", "least_loaded")],
        ),
    )
    # Ties go to the lower key; loads stay level until ada is full.
    assert owners(acme, 5) == ["ada", "bob", "ada", "bob", "bob"]
    assert (load(acme, "ada"), load(acme, "bob"), load(acme, "cy")) == (2, 3, 0)
    with pytest.raises(errors.NoRepAvailable):
        route(acme, qualified_lead(acme))


def test_least_loaded_prefers_the_lowest_load(acme):
    routing_config_install(
        tenant=acme,
        config=config([team("inbound", "ada", "bob")], [rule("all", "inbound", "least_loaded")]),
    )
    Rep.objects.filter(key="ada").update(load=5)
    assert owners(acme, 3) == ["bob", "bob", "bob"]


# -- re-route ----------------------------------------------------------------------------------


def test_reroute_gives_back_the_previous_reps_load(acme):
    round_robin(acme, "ada", "bob")
    lead = qualified_lead(acme)
    first = route(acme, lead)
    assert (first.owner, load(acme, "ada")) == ("ada", 1)
    second = route(acme, lead)
    assert second.owner == "bob"
    assert (load(acme, "ada"), load(acme, "bob")) == (0, 1)
    assert second.reason.endswith("; previous owner ada released")
    lead.refresh_from_db()
    assert (lead.stage, lead.owner) == ("routed", "bob")


def test_reroute_to_another_team_releases_across_teams(acme):
    routing_config_install(tenant=acme, config=RULES)
    lead = qualified_lead(acme, country="GB")
    assert route(acme, lead).owner == "ada"
    Lead.objects.filter(pk=lead.pk).update(country="US")
    assert route(acme, lead).owner == "ian"
    assert (load(acme, "ada"), load(acme, "ian")) == (0, 1)


# -- install_routing command -------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("install_routing", *args, stdout=out)
    return out.getvalue()


def test_command_installs_json_and_yaml_and_shows_it(acme, tmp_path):
    json_file = tmp_path / "routing.json"
    json_file.write_text(json.dumps(GOOD))
    assert "2 team(s), 1 rule(s); reps: 3 created" in run("acme", str(json_file))
    shown = json.loads(run("acme", "--show"))
    assert shown == routing_config_get(tenant=acme)

    yaml_file = tmp_path / "routing.yaml"
    yaml_file.write_text(yaml.safe_dump(config([team("inbound", "ada")], [rule("a", "inbound")])))
    assert "reps: 0 created, 1 updated, 0 deactivated, 2 deleted" in run("acme", str(yaml_file))
    assert [t["key"] for t in json.loads(run("acme", "--show"))["teams"]] == ["inbound"]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"teams": [', ".json", "is not valid JSON: Expecting value at line 1 column 12"),
        ("teams: [a, b", ".yaml", "is not valid YAML"),
        (
            json.dumps(_with(["rules", 0, "team"], "sales")),
            ".json",
            "is not a valid routing configuration: rules[0].team: unknown team 'sales'",
        ),
        ("[]", ".json", "is not a valid routing configuration: config: must be an object"),
    ],
)
def test_command_rejects_bad_files_precisely(acme, tmp_path, content, suffix, message):
    path = tmp_path / f"routing{suffix}"
    path.write_text(content)
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("(", r"\(")):
        run("acme", str(path))
    assert not RoutingRule.objects.exists()


def test_command_usage_errors(acme, tmp_path):
    with pytest.raises(CommandError, match="No tenant 'nobody'"):
        run("nobody", "--show")
    with pytest.raises(CommandError, match="Cannot read"):
        run("acme", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="Give the file to install"):
        run("acme")


# -- seed_demo ---------------------------------------------------------------------------------


def seed() -> list[str]:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue().strip().splitlines()


def test_seed_demo_installs_working_routing_and_keeps_its_contract(db):
    first = seed()
    tenant = Tenant.objects.get(slug="demo")
    shown = routing_config_get(tenant=tenant)
    inbound = next(t for t in shown["teams"] if t["key"] == "inbound")
    assert len(inbound["reps"]) >= 2
    assert {"name": "catch-all", "when": [], "team": "inbound", "strategy": "round_robin"} in (
        shown["rules"]
    )

    demo = Api(client=Client(), key=first[-1])
    lead = qualified_lead(tenant)
    body = demo.post(f"/v1/leads/{lead.id}/route").json()
    assert (body["team"], body["rule"], body["stage"]) == ("inbound", "catch-all", "routed")
    enterprise = demo.post(f"/v1/leads/{qualified_lead(tenant, grade='A').id}/route").json()
    assert enterprise["team"] == "enterprise"

    second = seed()  # reuses the tenant and leaves its routing (and loads) alone
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert second[-1] != first[-1]
    assert Api(client=Client(), key=second[-1]).get("/v1/leads").status_code == 200
    assert routing_config_get(tenant=tenant) == shown
    assert Rep.objects.filter(tenant=tenant).exclude(load=0).count() == 2
