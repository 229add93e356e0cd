"""Inserts compiled once per model write what `save()` writes; a conflicting insert writes
nothing and leaves the transaction usable."""

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction

from gtm_api.models import Lead
from neuronx.inserts import insert, insert_rows, insert_unless_conflict
from neuronx.models import IdempotencyRecord
from tests.factories import LeadFactory, TenantFactory
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def _stored(model, pk) -> dict:
    stored = model.objects.get(pk=pk)
    return {f.attname: getattr(stored, f.attname) for f in model._meta.concrete_fields} | {
        "id": None
    }


def test_an_insert_stores_what_save_stores(alice):
    data = {"lead": {"name": "Ada “Countess” Lovelace", "tags": ["a", 1, 1.5, None, True]}}
    saved = Event(tenant=alice.tenant, type="lead.created", data=data, request_id="req_1")
    saved.save()
    inserted = insert(
        Event(tenant=alice.tenant, type="lead.created", data=data, request_id="req_1")
    )
    assert not inserted._state.adding
    assert inserted.created_at is not None  # auto_now_add, as save() sets it
    stored = _stored(Event, inserted.pk)
    assert stored == _stored(Event, saved.pk) | {"created_at": stored["created_at"]}
    assert stored["created_at"] == inserted.created_at


def test_rows_are_inserted_one_by_one_or_in_bulk(alice):
    lead = LeadFactory(tenant=alice.tenant)
    one = insert_rows([Event(tenant=alice.tenant, type="lead.created", data={"n": 1})])
    many = insert_rows(
        [Event(tenant=alice.tenant, type="lead.created", data={"n": n}) for n in (2, 3)]
    )
    assert insert_rows([]) == []
    assert sorted(e.data["n"] for e in Event.objects.filter(tenant=alice.tenant)) == [1, 2, 3]
    assert all(not event._state.adding for event in one + many)
    assert lead.pk  # the factory's lead is untouched by the inserts


def test_a_conflicting_insert_writes_nothing_and_the_transaction_goes_on(alice):
    tenant = alice.tenant
    with transaction.atomic():
        first = Lead(tenant=tenant, email="ada@analytical-engines.com", first_name="Ada")
        assert insert_unless_conflict(first)
        twin = Lead(tenant=tenant, email="ada@analytical-engines.com", first_name="Twin")
        assert not insert_unless_conflict(twin)
        # No savepoint was needed: the transaction is still usable.
        assert Lead.objects.filter(tenant=tenant).count() == 1
    other = TenantFactory(slug="other")
    assert insert_unless_conflict(
        Lead(tenant=other, email="ada@analytical-engines.com", first_name="Ada")
    )
    assert Lead.objects.get(pk=first.pk).first_name == "Ada"


def _claim(api, fingerprint: str) -> IdempotencyRecord:
    return IdempotencyRecord(
        tenant=api.tenant,
        key="k-1",
        fingerprint=fingerprint,
        method="POST",
        path="/v1/leads",
        locked_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
    )


def test_a_claim_gets_its_automatic_key_from_the_database(alice):
    claim = _claim(alice, "f")
    assert insert_unless_conflict(claim)
    assert claim.pk == IdempotencyRecord.objects.get(key="k-1").pk
    again = _claim(alice, "g")
    assert not insert_unless_conflict(again)
    assert again.pk is None
    assert IdempotencyRecord.objects.get(key="k-1").fingerprint == "f"


def test_an_insert_that_breaks_a_constraint_raises(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        insert(Lead(tenant=alice.tenant, first_name="Nobody"))  # neither email nor phone
