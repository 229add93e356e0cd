"""POST /v1/leads/{id}/qualify: scoring, the stage machine, consent and the global rules."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from gtm_api.models import Lead, Qualification, Stage, StageTransition
from gtm_api.services.scoring import scoring_model_install
from tests.conftest import Api, lead_body, make_api, problem
from tests.factories import ConsentRecordFactory
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db

REPLAYED = "Idempotent-Replayed"


def create_lead(api: Api, *, profiling: bool = True, **overrides) -> dict:
    response = api.post("/v1/leads", lead_body(**overrides))
    assert response.status_code == 201, response.content
    lead = response.json()
    if profiling:
        ConsentRecordFactory(lead=Lead.objects.get(pk=lead["id"]), scope="data.profiling")
    return lead


def qualify(api: Api, lead_id: str, body=None, **kwargs):
    return api.post(f"/v1/leads/{lead_id}/qualify", body, **kwargs)


def set_stage(lead_id: str, stage: str) -> None:
    Lead.objects.filter(pk=lead_id).update(stage=stage)


def nothing_written() -> bool:
    return not (
        Qualification.objects.exists()
        or UsageEvent.objects.filter(dimension="lead.qualified").exists()
        or Event.objects.filter(type__in=["lead.qualified", "lead.disqualified"]).exists()
        or StageTransition.objects.exists()
    )


@pytest.fixture
def lead(alice) -> dict:
    return create_lead(alice)


# -- scoring through the API --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "score", "grade"),
    [
        ({}, 90, "A"),  # VP Engineering: senior title
        ({"job_title": "Software Engineer"}, 75, "B"),
        ({"source": "demo_request"}, 100, "A"),
    ],
)
def test_a_complete_business_lead_qualifies_with_seven_explained_factors(
    alice, overrides, score, grade
):
    lead = create_lead(alice, **overrides)
    response = qualify(alice, lead["id"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["score"], body["grade"], body["qualified"]) == (score, grade, True)
    assert body["lead_id"] == lead["id"] and body["id"].startswith("qual_")
    assert body["model_version"] == "default-1"
    assert body["stage"] == "qualified"
    assert body["qualified_at"].endswith("Z")
    factors = body["factors"]
    assert len(factors) == 7
    assert sum(f["points"] for f in factors) == body["score"]
    for factor in factors:
        assert set(factor) == {"name", "points", "reason"}
        assert isinstance(factor["points"], int) and factor["reason"]
    by_name = {f["name"]: f for f in factors}
    assert by_name["business_email"] == {
        "name": "business_email",
        "points": 25,
        "reason": "Business email domain",
    }
    shown = alice.get(f"/v1/leads/{lead['id']}").json()
    assert (shown["stage"], shown["score"]) == ("qualified", score)


def test_a_free_mail_lead_without_company_is_disqualified_and_told_why(alice):
    lead = create_lead(alice, email="ada.lovelace@gmail.com", company=None)
    body = qualify(alice, lead["id"]).json()
    assert (body["score"], body["grade"], body["qualified"]) == (50, "C", False)
    assert body["stage"] == "disqualified"
    by_name = {f["name"]: f for f in body["factors"]}
    assert by_name["business_email"]["points"] == 0
    assert by_name["business_email"]["reason"].startswith("Not met: Business email domain (")
    assert "free_email" in by_name["business_email"]["reason"]
    assert by_name["company"] == {
        "name": "company",
        "points": 0,
        "reason": "Not met: Company given (company present)",
    }
    assert sum(f["points"] for f in body["factors"]) == 50
    event = Event.objects.get(type__in=["lead.qualified", "lead.disqualified"])
    assert event.type == "lead.disqualified"
    assert Lead.objects.get(pk=lead["id"]).stage == Stage.DISQUALIFIED


@pytest.mark.parametrize("send", ["empty_object", "no_body", "no_body_no_content_type"])
def test_the_body_is_an_empty_object_or_nothing(alice, lead, send):
    if send == "empty_object":
        response = qualify(alice, lead["id"], {})
    elif send == "no_body":
        response = qualify(alice, lead["id"])
    else:
        response = qualify(alice, lead["id"], raw=b"", content_type="")
    assert response.status_code == 200, response.content


def test_qualifying_twice_gives_the_same_result(alice, lead):
    first = qualify(alice, lead["id"]).json()
    second = qualify(alice, lead["id"]).json()
    keys = ("score", "grade", "qualified", "factors", "model_version", "stage")
    assert {k: first[k] for k in keys} == {k: second[k] for k in keys}
    assert first["id"] != second["id"]
    assert Qualification.objects.filter(lead_id=lead["id"]).count() == 2


# -- what a qualification writes ------------------------------------------------------------


def test_qualify_writes_the_qualification_usage_event_and_stage_transition(alice, lead):
    response = qualify(alice, lead["id"], headers={"X-Request-ID": "req-qualify-1"})
    body = response.json()
    assert response["X-Request-ID"] == "req-qualify-1"

    qualification = Qualification.objects.get()
    assert qualification.tenant == alice.tenant
    assert (qualification.lead_id, qualification.score, qualification.grade) == (
        lead["id"],
        body["score"],
        body["grade"],
    )
    assert qualification.factors == body["factors"]
    assert qualification.model_version == "default-1"

    usage = UsageEvent.objects.get(dimension="lead.qualified")
    assert (usage.tenant, usage.quantity, usage.api_key_id) == (alice.tenant, 1, alice.api_key.id)
    assert usage.request_id == "req-qualify-1"

    event = Event.objects.get(type="lead.qualified")
    assert event.tenant == alice.tenant and event.request_id == "req-qualify-1"
    assert event.data["qualification"] == body
    assert event.data["lead"]["id"] == lead["id"]
    assert (event.data["lead"]["stage"], event.data["lead"]["score"]) == ("qualified", 90)

    transition = StageTransition.objects.get(lead_id=lead["id"])
    assert (transition.from_stage, transition.to_stage, transition.cause) == (
        "new",
        "qualified",
        "qualify",
    )
    assert transition.actor == f"api_key:{alice.api_key.id}"
    assert transition.request_id == "req-qualify-1"
    assert transition.tenant == alice.tenant


def test_requalifying_from_qualified_and_disqualified_is_allowed(alice, lead):
    path = f"/v1/leads/{lead['id']}"
    assert qualify(alice, lead["id"]).json()["stage"] == "qualified"
    assert qualify(alice, lead["id"]).json()["stage"] == "qualified"  # same stage: no transition

    alice.patch(path, {"email": "ada@gmail.com", "company": None})
    assert qualify(alice, lead["id"]).json()["stage"] == "disqualified"
    assert qualify(alice, lead["id"]).json()["stage"] == "disqualified"

    alice.patch(path, {"email": "ada@analytical-engines.com", "company": "AE Ltd"})
    assert qualify(alice, lead["id"]).json()["stage"] == "qualified"

    moves = list(
        StageTransition.objects.filter(lead_id=lead["id"])
        .order_by("id")
        .values_list("from_stage", "to_stage", "cause")
    )
    assert moves == [
        ("new", "qualified", "qualify"),
        ("qualified", "disqualified", "qualify"),
        ("disqualified", "qualified", "qualify"),
    ]
    assert Qualification.objects.filter(lead_id=lead["id"]).count() == 5
    assert UsageEvent.objects.filter(dimension="lead.qualified").count() == 5


def test_an_installed_model_is_used_and_reported_per_tenant(alice, bob):
    scoring_model_install(
        tenant=alice.tenant,
        definition={
            "name": "gb-only",
            "rules": [
                {
                    "name": "uk",
                    "points": 70,
                    "reason": "Based in the UK",
                    "when": [{"field": "country", "op": "eq", "value": "GB"}],
                }
            ],
            "grades": {"A": 70},
            "qualified_min_score": 70,
        },
    )
    body = qualify(alice, create_lead(alice)["id"]).json()
    assert body["model_version"] == "gb-only-1"
    assert body["factors"] == [{"name": "uk", "points": 70, "reason": "Based in the UK"}]
    assert (body["score"], body["grade"], body["qualified"]) == (70, "A", True)

    assert qualify(bob, create_lead(bob)["id"]).json()["model_version"] == "default-1"


# -- the stage machine ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["routed", "appointment_scheduled", "payment_pending"])
def test_qualifying_after_routing_is_an_invalid_state_transition(alice, lead, stage):
    set_stage(lead["id"], stage)
    body = problem(qualify(alice, lead["id"]), 409, "invalid_state_transition")
    assert body["current_stage"] == stage
    assert body["allowed_stages"] == ["new", "qualified", "disqualified"]
    assert stage in body["detail"]
    assert Lead.objects.get(pk=lead["id"]).stage == stage
    assert nothing_written()


def test_a_closed_lead_is_409_lead_closed(alice, lead):
    set_stage(lead["id"], Stage.VERIFIED_PAID)
    problem(qualify(alice, lead["id"]), 409, "lead_closed")
    assert Lead.objects.get(pk=lead["id"]).stage == Stage.VERIFIED_PAID
    assert nothing_written()


def test_the_stage_is_checked_before_consent(alice):
    lead = create_lead(alice, profiling=False)
    set_stage(lead["id"], Stage.ROUTED)
    problem(qualify(alice, lead["id"]), 409, "invalid_state_transition")


# -- consent --------------------------------------------------------------------------------


def test_without_profiling_consent_it_is_403_consent_required(alice):
    lead = create_lead(alice, profiling=False)
    ConsentRecordFactory(lead=Lead.objects.get(pk=lead["id"]), scope="contact.email")
    body = problem(qualify(alice, lead["id"]), 403, "consent_required")
    assert body["missing_scopes"] == ["data.profiling"]
    stored = Lead.objects.get(pk=lead["id"])
    assert (stored.stage, stored.score) == (Stage.NEW, None)
    assert nothing_written()


@pytest.mark.parametrize("how", ["revoked", "expired", "captured_in_the_future"])
def test_revoked_or_expired_profiling_consent_is_403(alice, how):
    lead = create_lead(alice, profiling=False)
    model = Lead.objects.get(pk=lead["id"])
    now = timezone.now()
    if how == "revoked":
        ConsentRecordFactory(
            lead=model, scope="data.profiling", captured_at=now - timedelta(days=2)
        )
        ConsentRecordFactory(
            lead=model,
            scope="data.profiling",
            granted=False,
            captured_at=now - timedelta(days=1),
        )
    elif how == "expired":
        ConsentRecordFactory(
            lead=model,
            scope="data.profiling",
            captured_at=now - timedelta(days=30),
            expires_at=now - timedelta(minutes=1),
        )
    else:
        ConsentRecordFactory(
            lead=model, scope="data.profiling", captured_at=now + timedelta(hours=1)
        )
    body = problem(qualify(alice, lead["id"]), 403, "consent_required")
    assert body["missing_scopes"] == ["data.profiling"]
    assert nothing_written()


def test_consent_given_through_the_api_unlocks_qualification(alice):
    lead = create_lead(alice, profiling=False)
    problem(qualify(alice, lead["id"]), 403, "consent_required")
    granted = alice.post(
        f"/v1/leads/{lead['id']}/consents",
        {
            "scope": "data.profiling",
            "granted": True,
            "captured_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
            "source": "web_form",
        },
    )
    assert granted.status_code == 201, granted.content
    assert qualify(alice, lead["id"]).status_code == 200


# -- tenancy, scopes and input ----------------------------------------------------------------


def test_another_tenants_lead_is_404(alice, charlie, lead):
    problem(qualify(charlie, lead["id"]), 404, "not_found")
    stored = Lead.objects.get(pk=lead["id"])
    assert (stored.stage, stored.score) == (Stage.NEW, None)
    assert nothing_written()


def test_an_unknown_lead_is_404(alice):
    problem(qualify(alice, "lead_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F"), 404, "not_found")


def test_a_key_without_leads_qualify_is_403_permission_denied(alice, lead):
    limited = make_api("alice", scopes=["leads:read", "leads:write"])
    body = problem(qualify(limited, lead["id"]), 403, "permission_denied")
    assert body["required_scope"] == "leads:qualify"
    assert nothing_written()


def test_a_key_with_only_leads_qualify_can_qualify(alice, lead):
    qualifier = make_api("alice", scopes=["leads:qualify"])
    assert qualify(qualifier, lead["id"]).status_code == 200


def test_no_key_is_401(anonymous, lead):
    problem(qualify(anonymous, lead["id"]), 401, "authentication_failed")


@pytest.mark.parametrize(
    "body", [{"force": True}, {"score": 100}, {"stage": "qualified"}, {"model_version": "x"}]
)
def test_any_body_field_is_422_and_writes_nothing(alice, lead, body):
    response = problem(qualify(alice, lead["id"], body), 422, "validation_error")
    [field] = body
    assert response["errors"] == [
        {"field": field, "code": "unknown_field", "message": "Unknown or read-only field."}
    ]
    assert nothing_written()


def test_a_non_object_body_is_400(alice, lead):
    problem(qualify(alice, lead["id"], []), 400, "malformed_request")
    problem(qualify(alice, lead["id"], raw=b"{"), 400, "malformed_request")


def test_a_form_body_is_415(alice, lead):
    problem(
        qualify(alice, lead["id"], raw="a=1", content_type="application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    )


def test_get_is_405(alice, lead):
    problem(alice.get(f"/v1/leads/{lead['id']}/qualify"), 405, "method_not_allowed")


# -- idempotency ----------------------------------------------------------------------------


def test_missing_idempotency_key_is_400(alice, lead):
    problem(qualify(alice, lead["id"], idempotency_key=None), 400, "idempotency_key_required")
    assert nothing_written()


def test_a_replay_returns_the_first_outcome_and_does_nothing_twice(alice, lead):
    first = qualify(alice, lead["id"], {}, idempotency_key="qualify-once")
    replay = qualify(alice, lead["id"], {}, idempotency_key="qualify-once")
    assert first.status_code == replay.status_code == 200
    assert replay[REPLAYED] == "true" and not first.has_header(REPLAYED)
    assert replay.json() == first.json()
    assert Qualification.objects.count() == 1
    assert UsageEvent.objects.filter(dimension="lead.qualified").count() == 1
    assert Event.objects.filter(type="lead.qualified").count() == 1
    assert StageTransition.objects.count() == 1


def test_a_replayed_refusal_stays_a_refusal(alice):
    lead = create_lead(alice, profiling=False)
    first = qualify(alice, lead["id"], idempotency_key="k-consent")
    problem(first, 403, "consent_required")
    ConsentRecordFactory(lead=Lead.objects.get(pk=lead["id"]), scope="data.profiling")
    replay = qualify(alice, lead["id"], idempotency_key="k-consent")
    assert replay.status_code == 403 and replay[REPLAYED] == "true"
    assert replay.json() == first.json()  # the stored body, original request_id included
    assert nothing_written()


def test_the_same_key_for_another_lead_is_422_reused(alice, lead):
    other = create_lead(alice, email="grace@acme-corp.com", external_id="crm-2")
    qualify(alice, lead["id"], idempotency_key="k-reused")
    problem(qualify(alice, other["id"], idempotency_key="k-reused"), 422, "idempotency_key_reused")
    assert Qualification.objects.count() == 1


# -- races (threads, real transactions: run on SQLite and on PostgreSQL) -------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_qualifies_of_one_lead_record_one_transition(alice):
    lead = create_lead(alice)
    count = 8
    barrier = threading.Barrier(count)
    responses: list = [None] * count
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            client = Api(client=Client(), key=alice.key)
            barrier.wait(timeout=10)
            responses[index] = qualify(client, lead["id"], idempotency_key=f"race-{index}")
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
    assert [r.status_code for r in responses] == [200] * count, [r.content for r in responses]
    # The lead lock serialises them: exactly one moved the lead out of `new`.
    transitions = StageTransition.objects.filter(lead_id=lead["id"])
    assert list(transitions.values_list("from_stage", "to_stage")) == [("new", "qualified")]
    assert Qualification.objects.filter(lead_id=lead["id"]).count() == count
    assert UsageEvent.objects.filter(dimension="lead.qualified").count() == count
