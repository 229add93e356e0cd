from datetime import datetime

from django.db.models import QuerySet

from gtm_api.models import Appointment
from neuronx import errors
from neuronx.models import Tenant


def appointment_get(*, tenant: Tenant, appointment_id: str) -> Appointment:
    appointment = Appointment.objects.filter(tenant=tenant, pk=appointment_id).first()
    if appointment is None:
        raise errors.NotFound(f"No appointment {appointment_id!r}.")
    return appointment


def appointment_list(
    *,
    tenant: Tenant,
    lead_id: str | None = None,
    status: str | None = None,
    starts_after: datetime | None = None,
    starts_before: datetime | None = None,
) -> QuerySet[Appointment]:
    appointments = Appointment.objects.filter(tenant=tenant)
    if lead_id is not None:
        appointments = appointments.filter(lead_id=lead_id)
    if status is not None:
        appointments = appointments.filter(status=status)
    if starts_after is not None:
        appointments = appointments.filter(starts_at__gte=starts_after)
    if starts_before is not None:
        appointments = appointments.filter(starts_at__lt=starts_before)
    return appointments
