from datetime import datetime

from django.db.models import QuerySet

from gtm_api.models import Lead
from neuronx import errors
from neuronx.models import Tenant


def lead_get(*, tenant: Tenant, lead_id: str, for_update: bool = False) -> Lead:
    """The tenant's lead, or `not_found` (another tenant's lead is indistinguishable from none)."""
    leads = Lead.objects.filter(tenant=tenant)
    if for_update:
        leads = leads.select_for_update()
    lead = leads.filter(pk=lead_id).first()
    if lead is None:
        raise errors.NotFound(f"No lead {lead_id!r}.")
    return lead


def lead_list(
    *,
    tenant: Tenant,
    email: str | None = None,
    external_id: str | None = None,
    stage: str | None = None,
    created_after: datetime | None = None,
    updated_after: datetime | None = None,
) -> QuerySet[Lead]:
    leads = Lead.objects.filter(tenant=tenant)
    if email is not None:
        leads = leads.filter(email=email)
    if external_id is not None:
        leads = leads.filter(external_id=external_id)
    if stage is not None:
        leads = leads.filter(stage=stage)
    if created_after is not None:
        leads = leads.filter(created_at__gt=created_after)
    if updated_after is not None:
        leads = leads.filter(updated_at__gt=updated_after)
    return leads


def lead_find_duplicate(
    *, tenant: Tenant, email: str | None, external_id: str | None, exclude_id: str | None = None
) -> Lead | None:
    """An existing lead sharing `external_id` or `email`, matched in that order."""
    leads = Lead.objects.filter(tenant=tenant)
    if exclude_id:
        leads = leads.exclude(pk=exclude_id)
    if external_id is not None:
        match = leads.filter(external_id=external_id).first()
        if match is not None:
            return match
    if email is not None:
        return leads.filter(email=email).first()
    return None
