"""The Sales OS boundary: nothing public can set verified_paid, verify a payment or open a case."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from gtm_api.checks import boundary_violations
from gtm_api.models import Appointment, CaseOpened, Lead, Payment
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db

BOUNDARY_VALUES = {
    "stage": "verified_paid",
    "status": "verified",
    "verified_paid": True,
    "verified": True,
    "verified_at": "2026-01-01T00:00:00Z",
    "case": {"open": True},
    "case_id": "case_x",
    "case_opened_at": "2026-01-01T00:00:00Z",
    "provider_reference": "pi_forged",
}


def _schema_fields(schema: dict[str, Any], ref_or_schema: dict[str, Any]) -> set[str]:
    if "$ref" in ref_or_schema:
        name = ref_or_schema["$ref"].rsplit("/", 1)[1]
        ref_or_schema = schema["components"]["schemas"][name]
    fields = set(ref_or_schema.get("properties", {}))
    for branch in ref_or_schema.get("oneOf", []) + ref_or_schema.get("anyOf", []):
        fields |= _schema_fields(schema, branch)
    return fields


def _fill(field: str, ids: dict[str, str]) -> Any:
    samples = {
        "lead_id": ids["lead"],
        "appointment_id": ids["appointment"],
        "amount": 100,
        "currency": "EUR",
        "channel": "video",
        "timezone": "UTC",
        "starts_at": (timezone.now() + timedelta(days=1)).isoformat(),
        "ends_at": (timezone.now() + timedelta(days=1, hours=1)).isoformat(),
        "email": "boundary@acme-corp.com",
        "first_name": "B",
        "last_name": "C",
        "source": "x",
    }
    return samples.get(field, BOUNDARY_VALUES.get(field, "verified_paid"))


def test_no_public_serializer_exposes_a_boundary_field():
    assert boundary_violations() == []


def test_every_public_operation_refuses_to_cross_the_boundary(alice):
    lead = LeadFactory(tenant=alice.tenant, stage="payment_pending", owner="ada")
    for scope in ("contact.email", "contact.phone", "data.profiling", "payment.processing"):
        ConsentRecordFactory(lead=lead, scope=scope)
    start = timezone.now() + timedelta(days=1)
    appointment = Appointment.objects.create(
        tenant=alice.tenant,
        lead=lead,
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        timezone="UTC",
        channel="video",
    )
    initiated = alice.post("/v1/payments", {"lead_id": lead.id, "amount": 100, "currency": "EUR"})
    assert initiated.status_code == 201, initiated.content
    ids = {"lead": lead.id, "appointment": appointment.id, "payment": initiated.json()["id"]}

    schema = alice.get("/v1/schema", {"format": "json"}).json()
    sent = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in {"post", "patch", "put", "delete"}:
                continue
            kind = path.split("/")[2]  # leads | appointments | payments | ...
            url = path.replace("{id}", ids.get(kind.rstrip("s"), ids["lead"]))
            content = operation.get("requestBody", {}).get("content", {})
            fields = set()
            if "application/json" in content:
                fields = _schema_fields(schema, content["application/json"]["schema"])
            bodies = [
                {**{f: _fill(f, ids) for f in fields}, **BOUNDARY_VALUES},
                {f: _fill(f, ids) for f in fields} | {"stage": "verified_paid"},
                dict(BOUNDARY_VALUES),
            ]
            for body in bodies:
                response = alice.send(method.upper(), url, body)
                sent += 1
                assert response.status_code < 500, (method, url, response.content)
    assert sent >= 9
    assert not Lead.objects.filter(stage="verified_paid").exists()
    assert not CaseOpened.objects.exists()
    assert not Payment.objects.filter(status="verified").exists()
    assert not Payment.objects.exclude(provider_reference="").exists()
