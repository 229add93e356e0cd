"""Payments (category 5): initiation and cancellation are public; verification is internal only.

`payment_verify` is the only way a lead reaches `verified_paid` and a case is opened. It is
called by `manage.py verify_payment` (and from the Django shell); no public endpoint reaches it.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent.selectors import consent_require
from gtm_api.currencies import currency_exponent
from gtm_api.models import (
    CaseOpened,
    Lead,
    Payment,
    PaymentStatus,
    Stage,
)
from gtm_api.selectors.appointments import appointment_get
from gtm_api.selectors.leads import lead_get
from gtm_api.selectors.payments import payment_get
from gtm_api.services.lifecycle import lead_ensure_open, lead_lock_for, lead_transition
from gtm_api.services.payment_providers import payment_provider
from gtm_api.services.routing import assignment_release
from neuronx import errors
from neuronx.context import Actor
from usage.services import usage_record
from webhooks.services import event_publish

CLOSED_STATUSES = (PaymentStatus.FAILED, PaymentStatus.CANCELED, PaymentStatus.EXPIRED)


def _event_data(payment: Payment, lead: Lead) -> dict[str, Any]:
    from gtm_api.payment_serializers import PaymentOutput
    from gtm_api.serializers import LeadOutput

    return {"payment": PaymentOutput(payment).data, "lead": LeadOutput(lead).data}


def payment_max_minor_units(*, tenant: Any, currency: str) -> int:
    major = tenant.payment_max_major_units or settings.PAYMENT_MAX_MAJOR_UNITS
    return int(major * 10 ** currency_exponent(currency))


@transaction.atomic
def payment_initiate(*, actor: Actor, data: Mapping[str, Any]) -> Payment:
    """Create a checkout for a routed or scheduled lead; the lead becomes `payment_pending`.

    Consent: `payment.processing`. The amount must not exceed the tenant's maximum. Emits
    `payment.initiated`; records `payment.initiated` usage. Never verifies anything.
    """
    lead = lead_lock_for(actor=actor, lead_id=data["lead_id"], action="payment")
    consent_require(lead=lead, scopes=("payment.processing",))
    limit = payment_max_minor_units(tenant=actor.tenant, currency=data["currency"])
    if data["amount"] > limit:
        raise errors.ValidationFailed(
            [
                {
                    "field": "amount",
                    "code": "max_value",
                    "message": f"Exceeds this tenant's maximum of {limit} {data['currency']} minor units.",
                }
            ]
        )
    appointment = None
    if data.get("appointment_id"):
        appointment = appointment_get(tenant=actor.tenant, appointment_id=data["appointment_id"])
        if appointment.lead_id != lead.id:
            raise errors.ValidationFailed(
                [
                    {
                        "field": "appointment_id",
                        "code": "wrong_lead",
                        "message": "The appointment belongs to another lead.",
                    }
                ]
            )
    if lead.stage == Stage.PAYMENT_PENDING:
        # Another payment is open: restore to whatever that one would restore to.
        open_payment = lead.payments.filter(status=PaymentStatus.INITIATED).order_by("id").first()
        previous_stage = open_payment.previous_stage if open_payment else Stage.ROUTED
    else:
        previous_stage = lead.stage
    provider = payment_provider()
    payment = Payment(
        tenant=actor.tenant,
        lead=lead,
        appointment=appointment,
        amount=data["amount"],
        currency=data["currency"],
        description=data.get("description") or "",
        provider=provider.name,
        previous_stage=previous_stage,
    )
    checkout = provider.checkout_create(
        payment_id=payment.id,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
    )
    payment.checkout_reference = checkout.reference
    payment.checkout_url = checkout.url
    payment.expires_at = checkout.expires_at
    payment.save(force_insert=True)
    lead_transition(
        actor=actor, lead=lead, to_stage=Stage.PAYMENT_PENDING, cause="payment.initiated"
    )
    usage_record(actor=actor, dimension="payment.initiated")
    event_publish(actor=actor, type="payment.initiated", data=_event_data(payment, lead))
    return payment


def _payment_close(*, actor: Actor, payment: Payment, lead: Lead, status: str, reason: str) -> None:
    """Close an initiated payment as failed/canceled/expired and restore the lead's stage."""
    payment.status = status
    payment.failure_reason = reason
    payment.save(update_fields=["status", "failure_reason", "updated_at"])
    others_open = lead.payments.filter(status=PaymentStatus.INITIATED).exclude(pk=payment.pk)
    if lead.stage == Stage.PAYMENT_PENDING and not others_open.exists():
        lead_transition(
            actor=actor, lead=lead, to_stage=payment.previous_stage, cause=f"payment.{status}"
        )
    event_publish(actor=actor, type="payment.failed", data=_event_data(payment, lead))


def _lock_payment_and_lead(*, tenant: Any, payment_id: str) -> tuple[Payment, Lead]:
    payment = payment_get(tenant=tenant, payment_id=payment_id)
    lead = lead_get(tenant=payment.tenant, lead_id=payment.lead_id, for_update=True)
    return payment_get(tenant=tenant, payment_id=payment_id, for_update=True), lead


@transaction.atomic
def payment_cancel(*, actor: Actor, payment_id: str) -> Payment:
    """Cancel an `initiated` payment; the lead returns to its stage before the payment.

    Emits `payment.failed` (with status `canceled`). Raises `lead_closed` for a handed-off
    lead and `payment_not_cancelable` unless the payment is `initiated`.
    """
    payment, lead = _lock_payment_and_lead(tenant=actor.tenant, payment_id=payment_id)
    lead_ensure_open(lead)
    if payment.status != PaymentStatus.INITIATED:
        raise errors.PaymentNotCancelable(
            f"Payment {payment.id} is `{payment.status}`; only an initiated payment can be canceled.",
            payment_status=payment.status,
        )
    payment_provider().checkout_cancel(reference=payment.checkout_reference)
    _payment_close(
        actor=actor,
        payment=payment,
        lead=lead,
        status=PaymentStatus.CANCELED,
        reason="Canceled by the integrator.",
    )
    return payment


@transaction.atomic
def payment_fail(*, actor: Actor, payment_id: str, reason: str) -> Payment:
    """Internal: the provider reports a failure. Idempotent for an already closed payment."""
    payment, lead = _lock_payment_and_lead(tenant=None, payment_id=payment_id)
    if payment.status == PaymentStatus.INITIATED:
        _payment_close(
            actor=actor, payment=payment, lead=lead, status=PaymentStatus.FAILED, reason=reason
        )
    return payment


@transaction.atomic
def payment_verify(*, actor: Actor, payment_id: str, provider_reference: str = "") -> CaseOpened:
    """Internal only: confirm the money arrived; the lead becomes `verified_paid` and a case opens.

    Idempotent: verifying a verified payment changes nothing and returns the existing case.
    Writes exactly one `CaseOpened` per lead (a database constraint backs this), emits
    `payment.verified` and `case.opened`. Raises `invalid_state_transition` for a payment that
    failed, was canceled or expired.
    """
    payment, lead = _lock_payment_and_lead(tenant=None, payment_id=payment_id)
    existing = CaseOpened.objects.filter(lead=lead).first()
    if payment.status == PaymentStatus.VERIFIED and existing is not None:
        return existing
    if payment.status != PaymentStatus.INITIATED:
        raise errors.InvalidStateTransition(
            f"Payment {payment.id} is `{payment.status}` and cannot be verified.",
            payment_status=payment.status,
        )
    payment.status = PaymentStatus.VERIFIED
    payment.verified_at = timezone.now()
    payment.provider_reference = provider_reference
    payment.save(update_fields=["status", "verified_at", "provider_reference", "updated_at"])
    if existing is not None:  # the lead was already handed off by another payment
        event_publish(actor=actor, type="payment.verified", data=_event_data(payment, lead))
        return existing
    lead_transition(actor=actor, lead=lead, to_stage=Stage.VERIFIED_PAID, cause="payment.verified")
    case = CaseOpened.objects.create(tenant=lead.tenant, lead=lead, payment=payment)
    # The owner's capacity is freed: a handed-off lead no longer counts as their load.
    current = lead.assignments.order_by("-created_at", "-id").first()
    if current is not None:
        assignment_release(assignment=current)
    event_publish(actor=actor, type="payment.verified", data=_event_data(payment, lead))
    event_publish(
        actor=actor,
        type="case.opened",
        data={
            "case": {
                "id": case.id,
                "lead_id": lead.id,
                "payment_id": payment.id,
                "opened_at": case.opened_at.isoformat().replace("+00:00", "Z"),
            },
            "lead": _event_data(payment, lead)["lead"],
        },
    )
    return case


def payments_expire_stale(*, now: Any = None) -> int:
    """Expire initiated payments past their checkout expiry; returns how many expired."""
    moment = now or timezone.now()
    stale = list(
        Payment.objects.filter(status=PaymentStatus.INITIATED, expires_at__lte=moment).values_list(
            "id", "tenant_id"
        )
    )
    expired = 0
    for payment_id, _tenant_id in stale:
        with transaction.atomic():
            payment, lead = _lock_payment_and_lead(tenant=None, payment_id=payment_id)
            if payment.status == PaymentStatus.INITIATED and payment.expires_at <= moment:
                actor = Actor.system(payment.tenant, name="payments_expire")
                _payment_close(
                    actor=actor,
                    payment=payment,
                    lead=lead,
                    status=PaymentStatus.EXPIRED,
                    reason="Checkout expired unpaid.",
                )
                expired += 1
    return expired
