"""Appointments (category 4): booking, rescheduling and outcomes; no availability logic."""

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from consent.selectors import consent_require
from gtm_api.models import Appointment, AppointmentStatus, Channel, Lead, Stage
from gtm_api.selectors.appointments import appointment_get
from gtm_api.selectors.leads import lead_get
from gtm_api.services.lifecycle import lead_ensure_open, lead_lock_for, lead_transition
from neuronx import errors
from neuronx.context import Actor
from usage.services import usage_record
from webhooks.services import event_publish

# The consent scope each channel needs before we may contact the lead through it.
CHANNEL_CONSENT: dict[str, str] = {
    Channel.PHONE: "contact.phone",
    Channel.VIDEO: "contact.email",
    Channel.IN_PERSON: "contact.email",
}
RESCHEDULE_FIELDS = ("starts_at", "ends_at", "timezone", "channel", "location", "notes")


def _event_data(appointment: Appointment, lead: Lead) -> dict[str, Any]:
    from gtm_api.appointment_serializers import AppointmentOutput
    from gtm_api.serializers import LeadOutput

    return {"appointment": AppointmentOutput(appointment).data, "lead": LeadOutput(lead).data}


@transaction.atomic
def appointment_create(*, actor: Actor, data: Mapping[str, Any]) -> Appointment:
    """Book an appointment for a routed lead and move it to `appointment_scheduled`.

    Consent: `contact.phone` for phone, `contact.email` for video and in-person. Emits
    `appointment.created`; records `appointment.created` usage.
    """
    lead = lead_lock_for(actor=actor, lead_id=data["lead_id"], action="appointment")
    consent_require(lead=lead, scopes=(CHANNEL_CONSENT[data["channel"]],))
    appointment = Appointment.objects.create(
        tenant=actor.tenant,
        lead=lead,
        starts_at=data["starts_at"],
        ends_at=data["ends_at"],
        timezone=data["timezone"],
        channel=data["channel"],
        location=data.get("location") or "",
        notes=data.get("notes") or "",
    )
    lead_transition(
        actor=actor, lead=lead, to_stage=Stage.APPOINTMENT_SCHEDULED, cause="appointment.created"
    )
    usage_record(actor=actor, dimension="appointment.created")
    event_publish(actor=actor, type="appointment.created", data=_event_data(appointment, lead))
    return appointment


@transaction.atomic
def appointment_update(
    *, actor: Actor, appointment_id: str, data: Mapping[str, Any]
) -> Appointment:
    """Reschedule a scheduled appointment, or set its outcome (`canceled`, `completed`, `no_show`).

    Canceling the lead's last scheduled appointment returns the lead to `routed`. A changed
    channel needs that channel's consent. Emits `appointment.canceled` or `appointment.updated`.
    Raises `lead_closed` once the lead is handed off and `appointment_closed` once the
    appointment has an outcome.
    """
    appointment = appointment_get(tenant=actor.tenant, appointment_id=appointment_id)
    lead = lead_get(tenant=actor.tenant, lead_id=appointment.lead_id, for_update=True)
    appointment = Appointment.objects.select_for_update().get(pk=appointment.pk)
    lead_ensure_open(lead)
    if appointment.status != AppointmentStatus.SCHEDULED:
        raise errors.AppointmentClosed(
            f"Appointment {appointment.id} is `{appointment.status}` and can no longer change.",
            appointment_status=appointment.status,
        )
    updates = {
        name: "" if data[name] is None else data[name] for name in RESCHEDULE_FIELDS if name in data
    }
    changed = [name for name, value in updates.items() if getattr(appointment, name) != value]
    if "channel" in changed:
        consent_require(lead=lead, scopes=(CHANNEL_CONSENT[updates["channel"]],))
    for name in changed:
        setattr(appointment, name, updates[name])
    new_status = data.get("status")
    if new_status is not None:
        appointment.status = new_status
    if not changed and new_status is None:
        return appointment
    appointment.save()
    if new_status == AppointmentStatus.CANCELED:
        still_scheduled = lead.appointments.filter(status=AppointmentStatus.SCHEDULED).exists()
        if not still_scheduled and lead.stage == Stage.APPOINTMENT_SCHEDULED:
            lead_transition(
                actor=actor, lead=lead, to_stage=Stage.ROUTED, cause="appointment.canceled"
            )
        event_publish(actor=actor, type="appointment.canceled", data=_event_data(appointment, lead))
    else:
        event_publish(actor=actor, type="appointment.updated", data=_event_data(appointment, lead))
    return appointment
