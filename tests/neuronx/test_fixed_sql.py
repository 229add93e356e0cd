"""Queries compiled once per shape give what their queryset gives, one statement per call."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from gtm_api.models import Lead
from gtm_api.selectors.leads import lead_get
from neuronx import errors
from neuronx.fixed_sql import FixedQuery
from tests.factories import LeadFactory, TenantFactory

pytestmark = pytest.mark.django_db

BY_TENANT = FixedQuery(
    Lead,
    ("tenant_id",),
    lambda limit, p: Lead.objects.filter(tenant_id=p["tenant_id"]).order_by("-id")[:limit],
)


def _values(instance: Model) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


@pytest.fixture
def leads() -> list[Lead]:
    tenant = TenantFactory(slug="fixed")
    made = [
        LeadFactory(
            tenant=tenant,
            attributes={"utm_campaign": "spring", "employees": 120, "nested": None},
            score=42,
            country="DE",
            phone="+493010000000",
        ),
        LeadFactory(tenant=tenant, email=None, phone="+493010000001", attributes={}),
        LeadFactory(tenant=tenant, external_id="crm-1", stage="qualified"),
    ]
    LeadFactory(tenant=TenantFactory(slug="other"))
    return made


def test_a_lead_read_by_id_is_the_orm_s_lead_field_for_field(leads):
    for lead in leads:
        fixed = lead_get(tenant=lead.tenant, lead_id=lead.id)
        orm = Lead.objects.get(pk=lead.id)
        assert _values(fixed) == _values(orm)
        assert fixed._state.adding is False and fixed._state.db == "default"
        assert isinstance(fixed.attributes, dict) and isinstance(fixed.created_at, datetime)
        assert fixed.created_at.utcoffset() == UTC.utcoffset(None)


def test_another_tenant_s_lead_is_not_found(leads):
    other = Lead.objects.exclude(tenant=leads[0].tenant).get()
    with pytest.raises(errors.NotFound):
        lead_get(tenant=leads[0].tenant, lead_id=other.id)
    with pytest.raises(errors.NotFound):
        lead_get(tenant=leads[0].tenant, lead_id="lead_DOESNOTEXIST")


def test_one_statement_per_call_and_the_values_are_parameters(leads):
    tenant = leads[0].tenant
    lead_get(tenant=tenant, lead_id=leads[0].id)  # compiled here
    with CaptureQueriesContext(connection) as queries:
        for lead in leads:
            assert lead_get(tenant=tenant, lead_id=lead.id).pk == lead.pk
    assert len(queries) == 3
    # The ids travel as parameters: the statement text is the same for every lead.
    assert len({q["sql"].replace(lead.id, "?") for q, lead in zip(queries, leads)}) == 1


def test_each_shape_is_compiled_on_its_own_and_dicts_match_instances(leads):
    tenant_id = leads[0].tenant_id
    expected = [_values(lead) for lead in Lead.objects.filter(tenant_id=tenant_id).order_by("-id")]
    for expected_page, limit in ((expected[:1], 1), (expected[:2], 2), (expected, 50)):
        instances = BY_TENANT.instances(limit, tenant_id=tenant_id)
        assert [_values(instance) for instance in instances] == expected_page
        assert BY_TENANT.dicts(limit, tenant_id=tenant_id) == expected_page


def _prepared() -> list[str]:
    """The statements PostgreSQL holds prepared for this connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_the_hot_reads_are_prepared_statements_on_postgresql(alice, leads):
    """Parsed and planned once per connection: on PostgreSQL the lead and the status document
    are prepared statements, not the page (its best plan depends on the tenant's size);
    elsewhere the same queries run as plain statements."""
    lead = LeadFactory(tenant=alice.tenant)
    for _ in range(2):
        assert alice.get(f"/v1/leads/{lead.id}").json()["id"] == lead.id
        assert alice.get("/v1/leads?limit=5").json()["results"][0]["id"] == lead.id
        assert alice.get(f"/v1/leads/{lead.id}/status").json()["lead_id"] == lead.id
    if connection.vendor != "postgresql":
        return
    prepared = _prepared()
    assert sum("gtm_api_caseopened" in statement for statement in prepared) == 1  # the status
    lead_reads = [statement for statement in prepared if 'FROM "gtm_api_lead"' in statement]
    assert len(lead_reads) == 1 and "ORDER BY" not in lead_reads[0]  # by id; not the page
    assert len(prepared) == len(set(prepared))  # prepared once, then reused
    # Counting queries (as DEBUG does) shows their text: the usual cursor then.
    with CaptureQueriesContext(connection) as queries:
        alice.get(f"/v1/leads/{lead.id}/status")
    assert sum("gtm_api_caseopened" in q["sql"] for q in queries.captured_queries) == 1


def test_without_prepared_statements_nothing_is_prepared(alice, settings):
    """DATABASE_PREPARED_STATEMENTS=false, for a pooler that cannot carry them."""
    from neuronx.fixed_sql import statement_cursor

    options = connection.settings_dict["OPTIONS"]
    saved = options.pop("prepare_threshold", None)
    try:
        with statement_cursor(connection) as cursor:
            cursor.execute("SELECT 1 + %s", [41])
            assert cursor.fetchone() == (42,)
        if connection.vendor == "postgresql":
            assert not [s for s in _prepared() if "SELECT 1 +" in s]
    finally:
        if saved is not None:
            options["prepare_threshold"] = saved
