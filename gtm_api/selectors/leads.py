from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from gtm_api.models import Lead
from gtm_api.serializers import LeadOutput
from neuronx import errors
from neuronx.fixed_sql import FixedQuery
from neuronx.json_rows import JsonRowSql, RowTexts, json_row, row_version
from neuronx.models import Tenant
from neuronx.pagination import FixedPages, RowText
from neuronx.renderers import JsonText

# The lead read on every `GET /v1/leads/{id}` (and before most lead actions), compiled once.
_LEAD_BY_ID = FixedQuery(
    Lead,
    ("tenant_id", "lead_id"),
    lambda shape, p: Lead.objects.filter(tenant_id=p["tenant_id"], pk=p["lead_id"]),
    prepared=True,
)


def lead_get(*, tenant: Tenant, lead_id: str, for_update: bool = False) -> Lead:
    """The tenant's lead, or `not_found` (another tenant's lead is indistinguishable from none)."""
    if for_update:
        try:
            return Lead.objects.select_for_update().get(tenant_id=tenant.pk, pk=lead_id)
        except Lead.DoesNotExist:
            raise errors.NotFound(f"No lead {lead_id!r}.") from None
    found = _LEAD_BY_ID.instances(tenant_id=tenant.pk, lead_id=lead_id)
    if not found:
        raise errors.NotFound(f"No lead {lead_id!r}.")
    return found[0]


def _lead_json_here() -> bool:
    """Whether the database writes `LeadOutput`'s JSON here and now (PostgreSQL, in UTC)."""
    row = json_row(LeadOutput)
    return connection.vendor == "postgresql" and row is not None and row.usable()


def _lead_json_expressions() -> tuple[Any, ...]:
    row = json_row(LeadOutput)
    assert row is not None
    return row.expressions


def _lead_by_id_json_query(shape: None, p: dict[str, str]) -> QuerySet[Lead, tuple[Any, ...]]:
    return Lead.objects.filter(tenant_id=p["tenant_id"], pk=p["lead_id"]).values_list(
        *_lead_json_expressions()
    )


# The same read with the lead as `LeadOutput`'s JSON text, written by PostgreSQL.
_LEAD_BY_ID_JSON = FixedQuery(Lead, ("tenant_id", "lead_id"), _lead_by_id_json_query, prepared=True)


def lead_text(*, tenant: Tenant, lead_id: str) -> JsonText | None:
    """The tenant's lead as `LeadOutput` renders it, written by the database (PostgreSQL), or
    `not_found`; None where the database cannot write it (then `lead_get` and the serializer)."""
    if not _lead_json_here():
        return None
    found = _LEAD_BY_ID_JSON.tuples(tenant_id=tenant.pk, lead_id=lead_id)
    if not found:
        raise errors.NotFound(f"No lead {lead_id!r}.")
    return JsonText(JsonRowSql.render(found[0]))


def lead_list(
    *,
    tenant: Tenant,
    email: str | None = None,
    external_id: str | None = None,
    stage: str | None = None,
    created_after: datetime | None = None,
    updated_after: datetime | None = None,
    json_rows: bool | None = None,
) -> QuerySet[Lead] | FixedPages:
    """The tenant's leads; unfiltered, with their pages read by SQL compiled once, and written
    as `LeadOutput`'s JSON by the database where it can (`json_rows`: PostgreSQL, by default)."""
    filters = (email, external_id, stage, created_after, updated_after)
    if all(value is None for value in filters):
        if json_rows is None:
            json_rows = _lead_json_here()
        return FixedPages(
            orm=partial(Lead.objects.filter, tenant_id=tenant.pk),
            fetch=partial(_lead_page, tenant_id=tenant.pk),
            fetch_json=partial(_lead_page, tenant_id=tenant.pk, as_json=True)
            if json_rows
            else None,
            json_output=LeadOutput,
        )
    leads = Lead.objects.filter(tenant_id=tenant.pk)
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


def _lead_page_query(shape: tuple[bool, str | None, int], p: dict[str, str]) -> QuerySet[Lead]:
    descending, bound, limit = shape
    leads = Lead.objects.filter(tenant_id=p["tenant_id"]).order_by("-id" if descending else "id")
    if bound is not None:
        leads = leads.filter(**{f"id__{bound}": p["position"]})
    return leads[:limit]


def _lead_page_versions_query(
    shape: tuple[bool, str | None, int], p: dict[str, str]
) -> QuerySet[Lead, tuple[Any, ...]]:
    return (
        _lead_page_query(shape, p).annotate(version=row_version(Lead)).values_list("id", "version")
    )


def _lead_page_json_query(
    shape: tuple[bool, str | None, int], p: dict[str, str]
) -> QuerySet[Lead, tuple[Any, ...]]:
    return _lead_page_versions_query(shape, p).values_list(
        "id", "version", *_lead_json_expressions()
    )


# A page of a tenant's leads (`GET /v1/leads`, unfiltered), compiled once per page size and
# direction; rendered from plain rows, as model instances would be, or read as `LeadOutput`'s
# JSON text (PostgreSQL): the rows' versions first, then, unless this process has the JSON text
# of each of those versions already, the page again with its rows as JSON text. Not prepared
# statements: a generic plan cannot be the best one for a small tenant's page and a large one's.
_LEAD_PAGE = FixedQuery(Lead, ("tenant_id", "position"), _lead_page_query)
_LEAD_PAGE_VERSIONS = FixedQuery(Lead, ("tenant_id", "position"), _lead_page_versions_query)
_LEAD_PAGE_JSON = FixedQuery(Lead, ("tenant_id", "position"), _lead_page_json_query)
_LEAD_TEXTS = RowTexts()


def _lead_page(
    *,
    tenant_id: str,
    descending: bool,
    limit: int,
    before: str | None = None,
    after: str | None = None,
    as_json: bool = False,
) -> list[Any]:
    values = {"tenant_id": tenant_id}
    bound = None
    if before is not None:
        bound, values["position"] = "lt", before
    elif after is not None:
        bound, values["position"] = "gt", after
    shape = (descending, bound, limit)
    if not as_json:
        return _LEAD_PAGE.dicts(shape, **values)
    versions = [
        (lead_id, version) for lead_id, version in _LEAD_PAGE_VERSIONS.tuples(shape, **values)
    ]
    texts = _LEAD_TEXTS.every(versions)
    if texts is not None:
        return [RowText(key[0], text) for key, text in zip(versions, texts, strict=True)]
    page = []
    for lead_id, version, *parts in _LEAD_PAGE_JSON.tuples(shape, **values):
        text = JsonRowSql.render(parts)
        _LEAD_TEXTS.put((lead_id, version), text)
        page.append(RowText(lead_id, text))
    return page


def lead_find_duplicate(
    *, tenant: Tenant, email: str | None, external_id: str | None, exclude_id: str | None = None
) -> Lead | None:
    """An existing lead sharing `external_id` or `email`, matched in that order."""
    match = Q()
    if external_id is not None:
        match |= Q(external_id=external_id)
    if email is not None:
        match |= Q(email=email)
    if not match:
        return None
    leads = Lead.objects.filter(match, tenant_id=tenant.pk)
    if exclude_id:
        leads = leads.exclude(pk=exclude_id)
    # One query: each key is unique per tenant, so at most one lead matches each.
    found = list(leads[:2])
    for lead in found:
        if external_id is not None and lead.external_id == external_id:
            return lead
    return found[0] if found else None
