"""POST /v1/leads/{id}/route: the public routing operation."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from gtm_api.models import Assignment, Lead, Rep, StageTransition, Team
from gtm_api.services.routing import routing_config_install
from tests.conftest import Api, make_api, problem
from tests.factories import LeadFactory
from tests.gtm_api.test_routing import config, qualified_lead, rep, round_robin, rule, team
from usage.models import UsageEvent
from webhooks.models import Event

REPLAYED = "Idempotent-Replayed"


def route_path(lead: Lead | str) -> str:
    return f"/v1/leads/{lead if isinstance(lead, str) else lead.id}/route"


@pytest.mark.django_db
def test_route_assigns_an_owner_and_records_everything(alice):
    round_robin(alice.tenant, "ada", "bob")
    lead = qualified_lead(alice.tenant, grade="B")
    response = alice.post(route_path(lead))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        "lead_id",
        "owner",
        "team",
        "rule",
        "strategy",
        "reason",
        "stage",
        "routed_at",
    }
    assert body["lead_id"] == lead.id
    assert (body["owner"], body["team"], body["rule"], body["strategy"], body["stage"]) == (
        "ada",
        "inbound",
        "catch-all",
        "round_robin",
        "routed",
    )
    assert body["reason"] == (
        "rule 'catch-all' matched → team inbound, round_robin → ada (turn 1 of 2 active reps)"
    )
    assert body["routed_at"].endswith("Z")

    lead.refresh_from_db()
    assert (lead.stage, lead.owner) == ("routed", "ada")
    assignment = Assignment.objects.get(lead=lead)
    assert (assignment.owner, assignment.rep.key, assignment.rep.load) == ("ada", "ada", 1)
    transition = StageTransition.objects.get(lead=lead)
    assert (transition.from_stage, transition.to_stage, transition.cause) == (
        "qualified",
        "routed",
        "route",
    )
    assert transition.actor == f"api_key:{alice.api_key.id}"
    usage = UsageEvent.objects.get(tenant=alice.tenant)
    assert (usage.dimension, usage.quantity, usage.api_key_id) == (
        "lead.routed",
        1,
        alice.api_key.id,
    )
    event = Event.objects.get(tenant=alice.tenant)
    assert event.type == "lead.routed"
    assert event.data["lead"]["owner"] == "ada" and event.data["lead"]["stage"] == "routed"
    assert event.data["assignment"]["id"] == assignment.id
    assert event.data["assignment"]["reason"] == body["reason"]
    assert event.data["assignment"]["previous_owner"] is None
    assert usage.request_id == event.request_id == transition.request_id == response["X-Request-ID"]


@pytest.mark.django_db
def test_body_may_be_absent_or_an_empty_object(alice):
    round_robin(alice.tenant, "ada")
    lead = qualified_lead(alice.tenant)
    assert alice.post(route_path(lead), raw=b"", content_type="").status_code == 200
    assert alice.post(route_path(lead), {}).status_code == 200


@pytest.mark.django_db
def test_reroute_from_routed_moves_the_lead_and_its_load(alice):
    round_robin(alice.tenant, "ada", "bob")
    lead = qualified_lead(alice.tenant)
    assert alice.post(route_path(lead)).json()["owner"] == "ada"
    again = alice.post(route_path(lead)).json()
    assert (again["owner"], again["stage"]) == ("bob", "routed")
    loads = dict(Rep.objects.values_list("key", "load"))
    assert loads == {"ada": 0, "bob": 1}
    assert StageTransition.objects.filter(lead=lead).count() == 1  # routed → routed is no change
    assert UsageEvent.objects.filter(dimension="lead.routed").count() == 2
    assert Event.objects.filter(type="lead.routed").last().data["assignment"]["previous_owner"] == (
        "ada"
    )


@pytest.mark.django_db
def test_no_routing_configured_is_409(alice):
    lead = qualified_lead(alice.tenant)
    body = problem(alice.post(route_path(lead)), 409, "routing_not_configured")
    assert "install_routing" in body["detail"]
    assert Lead.objects.get(pk=lead.pk).stage == "qualified"


@pytest.mark.django_db
def test_no_matching_rule_and_no_fallback_is_409_with_the_trace(alice):
    routing_config_install(
        tenant=alice.tenant,
        config=config(
            [team("uk", "ada")],
            [rule("uk", "uk", when=[{"field": "country", "op": "eq", "value": "GB"}])],
        ),
    )
    body = problem(
        alice.post(route_path(qualified_lead(alice.tenant, country="FR"))),
        409,
        "routing_not_configured",
    )
    assert body["reason"] == (
        "rule 'uk' skipped: country eq \"GB\" not met; no rule matched and there is no fallback"
    )


@pytest.mark.django_db
def test_all_reps_at_capacity_is_409_and_writes_nothing(alice):
    round_robin(alice.tenant, "ada", "bob", capacity=0)
    lead = qualified_lead(alice.tenant)
    body = problem(alice.post(route_path(lead)), 409, "no_rep_available")
    assert "at capacity: ada, bob" in body["reason"]
    lead.refresh_from_db()
    assert (lead.stage, lead.owner) == ("qualified", None)
    assert not Assignment.objects.exists()
    assert not UsageEvent.objects.exists() and not Event.objects.exists()
    assert Team.objects.get(tenant=alice.tenant).rr_position == 0


@pytest.mark.django_db
def test_new_lead_is_an_invalid_transition_naming_its_stage(alice):
    round_robin(alice.tenant, "ada")
    lead = LeadFactory(tenant=alice.tenant)
    body = problem(alice.post(route_path(lead)), 409, "invalid_state_transition")
    assert body["current_stage"] == "new"
    assert body["allowed_stages"] == ["qualified", "routed"]


@pytest.mark.django_db
@pytest.mark.parametrize("stage", ["disqualified", "appointment_scheduled", "payment_pending"])
def test_other_stages_cannot_be_routed(alice, stage):
    round_robin(alice.tenant, "ada")
    lead = LeadFactory(tenant=alice.tenant, stage=stage)
    assert problem(alice.post(route_path(lead)), 409, "invalid_state_transition")[
        "current_stage"
    ] == (stage)


@pytest.mark.django_db
def test_closed_lead_is_409_lead_closed(alice):
    round_robin(alice.tenant, "ada")
    lead = LeadFactory(tenant=alice.tenant, stage="verified_paid", owner="ada")
    problem(alice.post(route_path(lead)), 409, "lead_closed")
    assert not Assignment.objects.exists()


@pytest.mark.django_db
def test_another_tenants_lead_is_404(alice, charlie):
    round_robin(alice.tenant, "ada")
    round_robin(charlie.tenant, "cy")
    lead = qualified_lead(alice.tenant)
    problem(charlie.post(route_path(lead)), 404, "not_found")
    problem(alice.post(route_path("lead_DOESNOTEXIST")), 404, "not_found")
    assert Lead.objects.get(pk=lead.pk).stage == "qualified"


@pytest.mark.django_db
def test_key_without_leads_route_is_403_naming_it(db):
    writer = make_api("alice", scopes=["leads:read", "leads:write", "leads:qualify"])
    round_robin(writer.tenant, "ada")
    body = problem(writer.post(route_path(qualified_lead(writer.tenant))), 403, "permission_denied")
    assert body["required_scope"] == "leads:route"


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["owner", "team", "stage", "strategy"])
def test_any_body_field_is_unknown_and_422(alice, field):
    round_robin(alice.tenant, "ada")
    lead = qualified_lead(alice.tenant)
    body = problem(alice.post(route_path(lead), {field: "ada"}), 422, "validation_error")
    assert body["errors"] == [
        {"field": field, "code": "unknown_field", "message": "Unknown or read-only field."}
    ]
    assert Lead.objects.get(pk=lead.pk).owner is None


@pytest.mark.django_db
def test_bad_bodies_and_missing_idempotency_key(alice):
    round_robin(alice.tenant, "ada")
    lead = qualified_lead(alice.tenant)
    problem(alice.post(route_path(lead), raw=b"{"), 400, "malformed_request")
    problem(alice.post(route_path(lead), ["x"]), 400, "malformed_request")
    problem(alice.post(route_path(lead), idempotency_key=None), 400, "idempotency_key_required")
    problem(alice.get(route_path(lead)), 405, "method_not_allowed")
    assert not Assignment.objects.exists()


@pytest.mark.django_db
def test_idempotent_replay_routes_once(alice):
    round_robin(alice.tenant, "ada", "bob")
    lead = qualified_lead(alice.tenant)
    first = alice.post(route_path(lead), idempotency_key="route-once")
    replay = alice.post(route_path(lead), idempotency_key="route-once")
    assert first.status_code == replay.status_code == 200
    assert replay[REPLAYED] == "true" and not first.has_header(REPLAYED)
    assert replay.json() == first.json()
    assert Assignment.objects.count() == 1
    assert UsageEvent.objects.count() == 1 and Event.objects.count() == 1
    assert Rep.objects.get(key="ada").load == 1
    assert Team.objects.get().rr_position == 1
    problem(
        alice.post(route_path(lead), {"x": 1}, idempotency_key="route-once"),
        422,
        "idempotency_key_reused",
    )


@pytest.mark.django_db
def test_schema_documents_the_operation(alice):
    schema = Client().get("/v1/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/v1/leads/{id}/route" in text and "leads_route" in text
    for code in ("routing_not_configured", "no_rep_available", "lead_closed"):
        assert code in text


# -- races (threads, real transactions: run on SQLite and on PostgreSQL) -------------------------


def _fire(api: Api, lead_ids: list[str]) -> list:
    """POST /route for every lead at once: one thread, one client and one connection each."""
    barrier = threading.Barrier(len(lead_ids))
    responses: list = [None] * len(lead_ids)
    failures: list[BaseException] = []

    def worker(index: int, lead_id: str) -> None:
        try:
            client = Api(client=Client(), key=api.key)
            barrier.wait(timeout=10)
            responses[index] = client.post(route_path(lead_id))
        except BaseException as exc:  # reported below, not swallowed
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, lid)) for i, lid in enumerate(lead_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert all(response is not None for response in responses)
    return responses


@pytest.mark.django_db(transaction=True)
def test_concurrent_round_robin_routes_stay_fair(alice):
    round_robin(alice.tenant, "ada", "bob", "cy")
    leads = [qualified_lead(alice.tenant).id for _ in range(12)]
    responses = _fire(alice, leads)
    assert [r.status_code for r in responses] == [200] * 12, [r.content for r in responses]
    counts = Counter(r.json()["owner"] for r in responses)
    assert set(counts) == {"ada", "bob", "cy"}
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert dict(Rep.objects.values_list("key", "load")) == counts
    assert Assignment.objects.count() == 12
    assert UsageEvent.objects.filter(dimension="lead.routed").count() == 12
    assert set(Lead.objects.values_list("stage", flat=True)) == {"routed"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_least_loaded_routes_never_exceed_capacity(alice):
    routing_config_install(
        tenant=alice.tenant,
        config=config(
            [team("inbound", *(rep(k, capacity=4) for k in ("ada", "bob", "cy")))],
            [rule("all", "inbound", "least_loaded")],
        ),
    )
    leads = [qualified_lead(alice.tenant).id for _ in range(14)]
    responses = _fire(alice, leads)
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 12, [(r.status_code, r.content) for r in responses]
    for response in responses:
        if response.status_code != 200:
            problem(response, 409, "no_rep_available")
    assert dict(Rep.objects.values_list("key", "load")) == {"ada": 4, "bob": 4, "cy": 4}
    assert Counter(r.json()["owner"] for r in ok) == {"ada": 4, "bob": 4, "cy": 4}
