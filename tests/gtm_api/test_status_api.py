from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gtm_api.models import Payment
from gtm_api.services.payments import payment_verify
from neuronx.context import Actor
from tests.conftest import problem
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db


def _when(hours: float) -> str:
    return (timezone.now() + timedelta(hours=hours)).isoformat()


def _book_and_pay(api, lead):
    start = _when(24)
    api.post(
        "/v1/appointments",
        {
            "lead_id": lead.id,
            "starts_at": start,
            "ends_at": _when(25),
            "timezone": "UTC",
            "channel": "video",
        },
    )
    return api.post("/v1/payments", {"lead_id": lead.id, "amount": 1000, "currency": "USD"}).json()


@pytest.fixture
def lead(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="routed", owner="ada")
    for scope in ("contact.email", "payment.processing"):
        ConsentRecordFactory(lead=lead, scope=scope)
    return lead


def test_status_shows_the_whole_lifecycle(alice, lead):
    payment = _book_and_pay(alice, lead)
    status = alice.get(f"/v1/leads/{lead.id}/status").json()
    assert status["lead_id"] == lead.id and status["stage"] == "payment_pending"
    assert [a["status"] for a in status["appointments"]] == ["scheduled"]
    assert [p["id"] for p in status["payments"]] == [payment["id"]]
    assert status["consent"]["contact.email"] == "granted"
    assert status["consent"]["data.profiling"] == "not_captured"
    assert status["boundary"] == {"verified_paid": False, "case_opened_at": None, "case_id": None}
    assert [(h["from_stage"], h["to_stage"]) for h in status["history"]] == [
        ("routed", "appointment_scheduled"),
        ("appointment_scheduled", "payment_pending"),
    ]
    assert all(h["request_id"].startswith("req_") for h in status["history"])
    assert status["qualification"] is None and status["assignment"] is None

    case = payment_verify(actor=Actor.system(alice.tenant, "test"), payment_id=payment["id"])
    status = alice.get(f"/v1/leads/{lead.id}/status").json()
    assert status["stage"] == "verified_paid"
    assert status["boundary"]["verified_paid"] is True
    assert status["boundary"]["case_id"] == case.id
    assert status["boundary"]["case_opened_at"].endswith("Z")
    assert status["history"][-1]["actor"] == "internal:test"


def test_status_takes_constant_queries(alice, lead):
    _book_and_pay(alice, lead)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert alice.get(f"/v1/leads/{lead.id}/status").status_code == 200
        return len(ctx)

    few = count()
    for _ in range(5):
        payment = Payment.objects.filter(lead=lead, status="initiated").first()
        alice.post(f"/v1/payments/{payment.id}/cancel")
        alice.post("/v1/payments", {"lead_id": lead.id, "amount": 1000, "currency": "USD"})
    assert count() == few <= 10


def test_status_cross_tenant_and_missing(alice, charlie, lead):
    problem(charlie.get(f"/v1/leads/{lead.id}/status"), 404, "not_found")
    problem(alice.get("/v1/leads/lead_NOPE/status"), 404, "not_found")


def test_status_is_read_only(alice, lead):
    problem(
        alice.post(f"/v1/leads/{lead.id}/status", {"stage": "verified_paid"}),
        405,
        "method_not_allowed",
    )
