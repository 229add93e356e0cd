from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gtm_api.models import Appointment, Lead, StageTransition
from tests.conftest import make_api, problem
from tests.factories import ConsentRecordFactory, LeadFactory
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def _when(hours: float) -> str:
    return (timezone.now() + timedelta(hours=hours)).isoformat()


@pytest.fixture
def routed(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="routed", owner="ada", phone="+442079460958")
    ConsentRecordFactory(lead=lead, scope="contact.email")
    ConsentRecordFactory(lead=lead, scope="contact.phone")
    return lead


def body(lead, **overrides):
    data = {
        "lead_id": lead.id,
        "starts_at": _when(24),
        "ends_at": _when(24.5),
        "timezone": "Europe/Berlin",
        "channel": "video",
        "location": "https://meet.example.com/x",
        "notes": "Demo",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def test_create_schedules_and_moves_the_lead(alice, routed):
    response = alice.post("/v1/appointments", body(routed))
    assert response.status_code == 201, response.content
    appointment = response.json()
    assert appointment["id"].startswith("apt_") and appointment["status"] == "scheduled"
    assert response["Location"] == f"/v1/appointments/{appointment['id']}"
    routed.refresh_from_db()
    assert routed.stage == "appointment_scheduled"
    transition = StageTransition.objects.get(lead=routed)
    assert (transition.from_stage, transition.to_stage, transition.cause) == (
        "routed",
        "appointment_scheduled",
        "appointment.created",
    )
    assert UsageEvent.objects.filter(dimension="appointment.created").count() == 1
    assert Event.objects.filter(type="appointment.created").count() == 1


def test_a_second_appointment_keeps_the_stage(alice, routed):
    alice.post("/v1/appointments", body(routed))
    assert (
        alice.post(
            "/v1/appointments", body(routed, starts_at=_when(48), ends_at=_when(49))
        ).status_code
        == 201
    )
    assert StageTransition.objects.filter(lead=routed).count() == 1


@pytest.mark.parametrize(
    ("channel", "scope"),
    [("phone", "contact.phone"), ("video", "contact.email"), ("in_person", "contact.email")],
)
def test_consent_by_channel(alice, channel, scope):
    lead = LeadFactory(tenant=alice.tenant, stage="routed")
    location = {"phone": "+442079460958", "video": None, "in_person": "1 Main St, London"}[channel]
    response = alice.post("/v1/appointments", body(lead, channel=channel, location=location))
    assert problem(response, 403, "consent_required")["missing_scopes"] == [scope]
    assert not Appointment.objects.exists()
    assert Lead.objects.get(pk=lead.id).stage == "routed"


def test_revoked_consent_blocks(alice, routed):
    ConsentRecordFactory(lead=routed, scope="contact.email", granted=False)
    problem(alice.post("/v1/appointments", body(routed)), 403, "consent_required")


@pytest.mark.parametrize("stage", ["new", "qualified", "disqualified", "payment_pending"])
def test_wrong_stage_is_409(alice, stage):
    lead = LeadFactory(tenant=alice.tenant, stage=stage)
    ConsentRecordFactory(lead=lead, scope="contact.email")
    body_ = problem(alice.post("/v1/appointments", body(lead)), 409, "invalid_state_transition")
    assert body_["current_stage"] == stage
    assert body_["allowed_stages"] == ["routed", "appointment_scheduled"]


def test_closed_lead_is_409_lead_closed(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="verified_paid")
    problem(alice.post("/v1/appointments", body(lead)), 409, "lead_closed")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"ends_at": _when(23)}, "ends_at"),
        ({"ends_at": _when(24.01)}, "ends_at"),
        ({"ends_at": _when(34)}, "ends_at"),
        ({"starts_at": _when(-48), "ends_at": _when(-47)}, "starts_at"),
        ({"starts_at": _when(24 * 400), "ends_at": _when(24 * 400 + 1)}, "starts_at"),
        ({"channel": "carrier_pigeon"}, "channel"),
        ({"channel": "in_person", "location": None}, "location"),
        ({"channel": "video", "location": "http://insecure.example.com"}, "location"),
        ({"channel": "phone", "location": "call me"}, "location"),
        ({"lead_id": ...}, "lead_id"),
        ({"status": "completed"}, "status"),
    ],
)
def test_bad_input_is_422(alice, routed, overrides, field):
    errors = problem(
        alice.post("/v1/appointments", body(routed, **overrides)), 422, "validation_error"
    )["errors"]
    assert field in [e["field"] for e in errors], errors
    assert not Appointment.objects.exists()


def test_cross_tenant_lead_and_appointment_are_404(alice, charlie, routed):
    problem(charlie.post("/v1/appointments", body(routed)), 404, "not_found")
    appointment = alice.post("/v1/appointments", body(routed)).json()
    problem(charlie.get(f"/v1/appointments/{appointment['id']}"), 404, "not_found")
    problem(
        charlie.patch(f"/v1/appointments/{appointment['id']}", {"notes": "x"}), 404, "not_found"
    )
    assert charlie.get("/v1/appointments").json()["results"] == []


def test_scope_required(alice, routed):
    reader = make_api("alice", scopes=["leads:read"])
    assert (
        problem(reader.post("/v1/appointments", body(routed)), 403, "permission_denied")[
            "required_scope"
        ]
        == "appointments:write"
    )


def test_reschedule_and_outcomes(alice, routed):
    appointment = alice.post("/v1/appointments", body(routed)).json()
    path = f"/v1/appointments/{appointment['id']}"
    moved = alice.patch(
        path, {"starts_at": _when(30), "ends_at": _when(31), "timezone": "America/New_York"}
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["timezone"] == "America/New_York"
    assert Event.objects.filter(type="appointment.updated").count() == 1
    done = alice.patch(path, {"status": "completed", "notes": "Went well"})
    assert done.json()["status"] == "completed"
    routed.refresh_from_db()
    assert routed.stage == "appointment_scheduled"
    problem(alice.patch(path, {"status": "canceled"}), 409, "appointment_closed")


def test_canceling_the_last_appointment_returns_the_lead_to_routed(alice, routed):
    first = alice.post("/v1/appointments", body(routed)).json()
    second = alice.post(
        "/v1/appointments", body(routed, starts_at=_when(48), ends_at=_when(49))
    ).json()
    alice.patch(f"/v1/appointments/{first['id']}", {"status": "canceled"})
    routed.refresh_from_db()
    assert routed.stage == "appointment_scheduled"
    alice.patch(f"/v1/appointments/{second['id']}", {"status": "canceled"})
    routed.refresh_from_db()
    assert routed.stage == "routed"
    assert Event.objects.filter(type="appointment.canceled").count() == 2
    last = StageTransition.objects.filter(lead=routed).order_by("id").last()
    assert (last.to_stage, last.cause) == ("routed", "appointment.canceled")


def test_changing_channel_needs_that_consent(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="routed")
    ConsentRecordFactory(lead=lead, scope="contact.email")
    appointment = alice.post("/v1/appointments", body(lead)).json()
    response = alice.patch(
        f"/v1/appointments/{appointment['id']}", {"channel": "phone", "location": "+442079460958"}
    )
    assert problem(response, 403, "consent_required")["missing_scopes"] == ["contact.phone"]
    assert Appointment.objects.get().channel == "video"


@pytest.mark.parametrize(
    "patch",
    [
        {},
        {"status": "canceled", "starts_at": _when(5)},
        {"status": "scheduled"},
        {"lead_id": "lead_x"},
    ],
)
def test_bad_patch_is_422(alice, routed, patch):
    appointment = alice.post("/v1/appointments", body(routed)).json()
    problem(alice.patch(f"/v1/appointments/{appointment['id']}", patch), 422, "validation_error")


def test_patch_on_a_closed_lead_is_lead_closed(alice, routed):
    appointment = alice.post("/v1/appointments", body(routed)).json()
    Lead.objects.filter(pk=routed.pk).update(stage="verified_paid")
    problem(
        alice.patch(f"/v1/appointments/{appointment['id']}", {"notes": "x"}), 409, "lead_closed"
    )


def test_list_filters_and_constant_queries(alice, routed):
    for hours in (10, 20, 30):
        alice.post(
            "/v1/appointments", body(routed, starts_at=_when(hours), ends_at=_when(hours + 1))
        )
    results = alice.get("/v1/appointments", {"lead_id": routed.id}).json()["results"]
    assert len(results) == 3
    assert alice.get("/v1/appointments", {"status": "canceled"}).json()["results"] == []
    problem(alice.get("/v1/appointments", {"status": "nope"}), 422, "validation_error")

    with CaptureQueriesContext(connection) as few:
        alice.get("/v1/appointments")
    for hours in (40, 50, 60, 70):
        alice.post(
            "/v1/appointments", body(routed, starts_at=_when(hours), ends_at=_when(hours + 1))
        )
    with CaptureQueriesContext(connection) as many:
        alice.get("/v1/appointments")
    assert len(few) == len(many)


def test_replayed_create_books_once(alice, routed):
    data = body(routed)
    first = alice.post("/v1/appointments", data, idempotency_key="apt-1")
    again = alice.post("/v1/appointments", data, idempotency_key="apt-1")
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Appointment.objects.count() == 1
    assert UsageEvent.objects.filter(dimension="appointment.created").count() == 1
