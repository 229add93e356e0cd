from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from gtm_api.models import Appointment, CaseOpened, Lead, Payment, StageTransition
from gtm_api.services.payments import payment_fail, payment_verify, payments_expire_stale
from gtm_api.tasks import payments_expire
from neuronx import errors
from neuronx.context import Actor
from tests.conftest import make_api, problem
from tests.factories import ConsentRecordFactory, LeadFactory
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def payable(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="appointment_scheduled", owner="ada")
    start = timezone.now() + timedelta(days=1)
    Appointment.objects.create(
        tenant=alice.tenant,
        lead=lead,
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        timezone="UTC",
        channel="video",
    )
    ConsentRecordFactory(lead=lead, scope="payment.processing")
    return lead


def pay(lead, **overrides):
    data = {"lead_id": lead.id, "amount": 49900, "currency": "eur", "description": "Onboarding"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def verify(payment_id: str) -> CaseOpened:
    payment = Payment.objects.get(pk=payment_id)
    return payment_verify(actor=Actor.system(payment.tenant, "test"), payment_id=payment_id)


def test_initiate_returns_a_checkout_and_moves_the_lead(alice, payable):
    response = alice.post("/v1/payments", pay(payable))
    assert response.status_code == 201, response.content
    payment = response.json()
    assert payment["status"] == "initiated" and payment["currency"] == "EUR"
    assert payment["checkout_reference"].startswith("chk_")
    assert payment["checkout_url"].endswith(payment["checkout_reference"])
    assert response["Location"] == f"/v1/payments/{payment['id']}"
    payable.refresh_from_db()
    assert payable.stage == "payment_pending"
    assert UsageEvent.objects.filter(dimension="payment.initiated").count() == 1
    assert Event.objects.filter(type="payment.initiated").count() == 1


def test_consent_is_required(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="routed")
    body = problem(alice.post("/v1/payments", pay(lead)), 403, "consent_required")
    assert body["missing_scopes"] == ["payment.processing"]
    assert not Payment.objects.exists()


@pytest.mark.parametrize("stage", ["new", "qualified", "disqualified"])
def test_wrong_stage_is_409(alice, stage):
    lead = LeadFactory(tenant=alice.tenant, stage=stage)
    ConsentRecordFactory(lead=lead, scope="payment.processing")
    body = problem(alice.post("/v1/payments", pay(lead)), 409, "invalid_state_transition")
    assert body["current_stage"] == stage


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"amount": 0}, "amount", "min_value"),
        ({"amount": -5}, "amount", "min_value"),
        ({"amount": 10.5}, "amount", "invalid"),
        ({"amount": "ten"}, "amount", "invalid"),
        ({"currency": "EURO"}, "currency", "invalid_currency"),
        ({"currency": "ZZZ"}, "currency", "invalid_currency"),
        ({"currency": "XAU"}, "currency", "invalid_currency"),
        ({"amount": 100_000_01}, "amount", "max_value"),
        ({"currency": "JPY", "amount": 100_000_001}, "amount", "max_value"),
        ({"status": "verified"}, "status", "unknown_field"),
        ({"verified": True}, "verified", "unknown_field"),
        ({"lead_id": ...}, "lead_id", "required"),
    ],
)
def test_bad_input_is_422(alice, payable, overrides, field, code):
    errors_ = problem(
        alice.post("/v1/payments", pay(payable, **overrides)), 422, "validation_error"
    )["errors"]
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in errors_
    ], errors_
    assert not Payment.objects.exists()


def test_the_maximum_follows_the_currency_exponent_and_the_tenant(alice, payable):
    assert (
        alice.post("/v1/payments", pay(payable, currency="JPY", amount=100_000)).status_code == 201
    )
    alice.tenant.payment_max_major_units = 10
    alice.tenant.save()
    problem(
        alice.post("/v1/payments", pay(payable, currency="KWD", amount=10_001)),
        422,
        "validation_error",
    )
    assert (
        alice.post("/v1/payments", pay(payable, currency="KWD", amount=10_000)).status_code == 201
    )


def test_cancel_restores_the_previous_stage(alice, payable):
    payment = alice.post("/v1/payments", pay(payable)).json()
    response = alice.post(f"/v1/payments/{payment['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    payable.refresh_from_db()
    assert payable.stage == "appointment_scheduled"
    assert Event.objects.filter(type="payment.failed").count() == 1
    problem(alice.post(f"/v1/payments/{payment['id']}/cancel"), 409, "payment_not_cancelable")


def test_two_open_payments_restore_only_when_both_close(alice, payable):
    first = alice.post("/v1/payments", pay(payable)).json()
    second = alice.post("/v1/payments", pay(payable, amount=100)).json()
    alice.post(f"/v1/payments/{first['id']}/cancel")
    assert Lead.objects.get(pk=payable.pk).stage == "payment_pending"
    alice.post(f"/v1/payments/{second['id']}/cancel")
    assert Lead.objects.get(pk=payable.pk).stage == "appointment_scheduled"


def test_verification_is_internal_idempotent_and_opens_one_case(alice, payable):
    payment = alice.post("/v1/payments", pay(payable)).json()
    case = verify(payment["id"])
    again = verify(payment["id"])
    assert case.pk == again.pk and CaseOpened.objects.count() == 1
    payable.refresh_from_db()
    assert payable.stage == "verified_paid"
    assert Event.objects.filter(type="case.opened").count() == 1
    assert Event.objects.filter(type="payment.verified").count() == 1
    transition = StageTransition.objects.filter(lead=payable).order_by("id").last()
    assert (transition.to_stage, transition.cause, transition.actor) == (
        "verified_paid",
        "payment.verified",
        "internal:test",
    )
    # From now on every public mutation answers lead_closed.
    problem(alice.post(f"/v1/payments/{payment['id']}/cancel"), 409, "lead_closed")
    problem(alice.post("/v1/payments", pay(payable)), 409, "lead_closed")
    problem(alice.patch(f"/v1/leads/{payable.id}", {"first_name": "X"}), 409, "lead_closed")


def test_a_canceled_payment_cannot_be_verified(alice, payable):
    payment = alice.post("/v1/payments", pay(payable)).json()
    alice.post(f"/v1/payments/{payment['id']}/cancel")
    with pytest.raises(errors.InvalidStateTransition):
        verify(payment["id"])
    assert not CaseOpened.objects.exists()


def test_verify_payment_command(alice, payable):
    payment = alice.post("/v1/payments", pay(payable)).json()
    out = StringIO()
    call_command("verify_payment", payment["id"], "--provider-reference", "pi_123", stdout=out)
    assert "verified" in out.getvalue()
    assert Payment.objects.get().provider_reference == "pi_123"
    call_command("verify_payment", payment["id"], stdout=StringIO())
    assert CaseOpened.objects.count() == 1
    with pytest.raises(CommandError, match="not_found"):
        call_command("verify_payment", "pay_nope", stdout=StringIO())


def test_failure_and_expiry_restore_the_stage(alice, payable):
    first = alice.post("/v1/payments", pay(payable)).json()
    payment_fail(
        actor=Actor.system(alice.tenant, "provider"), payment_id=first["id"], reason="card_declined"
    )
    assert Lead.objects.get(pk=payable.pk).stage == "appointment_scheduled"
    assert Payment.objects.get(pk=first["id"]).failure_reason == "card_declined"

    second = alice.post("/v1/payments", pay(payable)).json()
    assert payments_expire_stale() == 0
    Payment.objects.filter(pk=second["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert payments_expire.delay().get() == 1
    assert Payment.objects.get(pk=second["id"]).status == "expired"
    assert Lead.objects.get(pk=payable.pk).stage == "appointment_scheduled"


def test_cross_tenant_is_404(alice, charlie, payable):
    problem(charlie.post("/v1/payments", pay(payable)), 404, "not_found")
    payment = alice.post("/v1/payments", pay(payable)).json()
    problem(charlie.get(f"/v1/payments/{payment['id']}"), 404, "not_found")
    problem(charlie.post(f"/v1/payments/{payment['id']}/cancel"), 404, "not_found")
    assert charlie.get("/v1/payments").json()["results"] == []
    assert Payment.objects.get().status == "initiated"


def test_scope_and_reads(alice, payable):
    reader = make_api("alice", scopes=["leads:read"])
    assert (
        problem(reader.post("/v1/payments", pay(payable)), 403, "permission_denied")[
            "required_scope"
        ]
        == "payments:write"
    )
    payment = alice.post("/v1/payments", pay(payable)).json()
    assert reader.get(f"/v1/payments/{payment['id']}").json() == payment
    assert [
        p["id"] for p in reader.get("/v1/payments", {"lead_id": payable.id}).json()["results"]
    ] == [payment["id"]]
    problem(reader.get("/v1/payments", {"status": "paid"}), 422, "validation_error")
    problem(
        alice.post(f"/v1/payments/{payment['id']}/cancel", {"reason": "x"}), 422, "validation_error"
    )


def test_replayed_initiation_charges_once(alice, payable):
    data = pay(payable)
    first = alice.post("/v1/payments", data, idempotency_key="pay-1")
    again = alice.post("/v1/payments", data, idempotency_key="pay-1")
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Payment.objects.count() == 1
    assert UsageEvent.objects.filter(dimension="payment.initiated").count() == 1


def test_cancel_restores_the_stage_before_the_payment_even_after_the_appointment(alice, payable):
    payment = alice.post("/v1/payments", pay(payable)).json()
    Appointment.objects.filter(lead=payable).update(status="completed")
    alice.post(f"/v1/payments/{payment['id']}/cancel")
    assert Lead.objects.get(pk=payable.pk).stage == "appointment_scheduled"
