"""Every /v1/ operation × {no key, revoked key, key lacking the scope, other tenant's key, right key}.

The operations come from the URLconf (neuronx.routes.api_operations), so a new endpoint is in the
matrix the moment it is routed; a path parameter this file cannot fill fails loudly.
"""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from gtm_api.models import Appointment
from neuronx.models import SCOPES
from neuronx.routes import api_operations
from neuronx.tenancy import api_key_revoke
from tests.conftest import Api, make_api, problem
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db

OPERATIONS = [op for op in api_operations() if op.operation is not None]


def _ids(alice: Api) -> dict[str, str]:
    """One object of alice's for every kind of path parameter."""
    lead = LeadFactory(tenant=alice.tenant, stage="appointment_scheduled", owner="ada")
    for scope in ("contact.email", "payment.processing", "data.profiling"):
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
    payment = alice.post("/v1/payments", {"lead_id": lead.id, "amount": 100, "currency": "EUR"})
    subscription = alice.post(
        "/v1/webhook-subscriptions",
        {"url": "https://127.0.0.1:9/neuronx", "event_types": ["lead.created"]},
    )
    assert subscription.status_code == 201, subscription.content
    ping = alice.post(f"/v1/webhook-subscriptions/{subscription.json()['id']}/test")
    assert ping.status_code in (200, 201, 202), ping.content
    deliveries = alice.get(f"/v1/webhook-subscriptions/{subscription.json()['id']}/deliveries")
    job = alice.post(
        "/v1/lead-imports",
        {
            "leads": [
                {
                    "email": "import@acme-corp.com",
                    "first_name": "I",
                    "last_name": "M",
                    "source": "x",
                }
            ]
        },
    )
    assert job.status_code == 202, job.content
    return {
        "leads": lead.id,
        "appointments": appointment.id,
        "payments": payment.json()["id"],
        "webhook-subscriptions": subscription.json()["id"],
        "delivery_id": deliveries.json()["results"][0]["id"],
        "lead-imports": job.json()["id"],
    }


def _url(path: str, ids: dict[str, str]) -> str:
    kind = path.split("/")[2]

    def fill(match: re.Match[str]) -> str:
        name = match[1]
        key = kind if name == "id" else name
        assert key in ids, f"add an object for path parameter {name!r} of {path}"
        return ids[key]

    return re.sub(r"\{(\w+)\}", fill, path)


def _body(method: str, path: str, ids: dict[str, str]) -> dict[str, Any]:
    start = timezone.now() + timedelta(days=2)
    if method == "POST" and path == "/v1/appointments":
        return {
            "lead_id": ids["leads"],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "timezone": "UTC",
            "channel": "video",
        }
    if method == "POST" and path == "/v1/payments":
        return {"lead_id": ids["leads"], "amount": 100, "currency": "EUR"}
    return {}


def _call(api: Api, method: str, url: str, body: dict[str, Any]) -> Any:
    if method == "GET":
        return api.get(url)
    return api.send(method, url, body if method != "DELETE" else None)


@pytest.fixture
def cast(alice, bob, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    return alice, bob, _ids(alice)


@pytest.mark.parametrize("declared", OPERATIONS, ids=lambda o: f"{o.method} {o.path}")
def test_authorization_matrix(cast, declared, anonymous):
    alice, bob, ids = cast
    op = declared.operation
    url, body = _url(declared.path, ids), _body(declared.method, declared.path, ids)

    problem(_call(anonymous, declared.method, url, body), 401, "authentication_failed")

    revoked = make_api("alice")
    api_key_revoke(api_key=revoked.api_key)
    problem(_call(revoked, declared.method, url, body), 401, "authentication_failed")

    lacking = make_api("alice", scopes=[s for s in SCOPES if s != op.scope])
    denied = problem(_call(lacking, declared.method, url, body), 403, "permission_denied")
    assert denied["required_scope"] == op.scope

    other = _call(bob, declared.method, url, body)
    assert other.status_code < 500, other.content
    if "{" in declared.path or body.get("lead_id"):
        problem(other, 404, "not_found")
    elif declared.method == "GET":
        assert not any(value in other.content.decode() for value in ids.values()), (
            "another tenant's list shows alice's objects"
        )

    right = _call(alice, declared.method, url, body)
    assert right.status_code < 500, right.content
    assert right.status_code not in (401, 403, 404), right.content
