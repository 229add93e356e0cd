from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from consent.models import ConsentRecord
from neuronx.context import Actor
from neuronx.inserts import insert_rows


@transaction.atomic(savepoint=False)  # the caller's transaction rolls back on failure
def consent_append(
    *, actor: Actor, lead: Any, records: Iterable[Mapping[str, Any]]
) -> list[ConsentRecord]:
    """Append consent records to a lead's ledger. Records are never updated or deleted."""
    return consent_append_many(actor=actor, records=[(lead.pk, record) for record in records])


@transaction.atomic(savepoint=False)  # the caller's transaction rolls back on failure
def consent_append_many(
    *, actor: Actor, records: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[ConsentRecord]:
    """Append `(lead_id, record)` pairs to the ledgers of many leads in one insert (bulk import).

    The leads must belong to the actor's tenant; the caller has checked that.
    """
    rows = [
        ConsentRecord(
            tenant=actor.tenant,
            lead_id=lead_id,
            scope=record["scope"],
            granted=record["granted"],
            captured_at=record["captured_at"],
            source=record["source"],
            evidence=record.get("evidence") or "",
            expires_at=record.get("expires_at"),
            recorded_by=actor.label,
            request_id=actor.request_id,
        )
        for lead_id, record in records
    ]
    return insert_rows(rows)
