from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import ConsentRecord
from consent.selectors import consent_require, consent_state
from gtm_api.models import Stage
from neuronx import errors
from tests.conftest import lead_body, make_api, problem
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db


def _at(**delta: float) -> str:
    return (timezone.now() + timedelta(**delta)).isoformat()


def record(scope: str = "contact.email", granted: bool = True, **extra):
    return {
        "scope": scope,
        "granted": granted,
        "captured_at": _at(minutes=-1),
        "source": "web_form",
        **extra,
    }


@pytest.fixture
def lead(alice):
    return alice.post("/v1/leads", lead_body()).json()


def test_post_a_single_record_returns_the_ledger(alice, lead):
    response = alice.post(
        f"/v1/leads/{lead['id']}/consents", record(evidence="Checkbox v3", expires_at=_at(days=30))
    )
    assert response.status_code == 201, response.content
    ledger = response.json()
    assert ledger["lead_id"] == lead["id"]
    assert response["Location"] == f"/v1/leads/{lead['id']}/consents"
    current = ledger["current"]["contact.email"]
    assert current["state"] == "granted" and current["granted"] is True
    assert current["record_id"] == ledger["history"][0]["id"]
    assert ledger["history"][0]["evidence"] == "Checkbox v3"
    assert set(ledger["current"]) == {
        "contact.email",
        "contact.sms",
        "contact.phone",
        "data.profiling",
        "payment.processing",
    }


def test_post_a_batch_and_the_latest_capture_wins(alice, lead):
    path = f"/v1/leads/{lead['id']}/consents"
    response = alice.post(
        path,
        {
            "consents": [
                {**record(granted=False), "captured_at": _at(minutes=-1)},
                {**record(granted=True), "captured_at": _at(hours=-2)},  # older, sent second
            ]
        },
    )
    assert response.status_code == 201
    assert response.json()["current"]["contact.email"]["state"] == "revoked"
    assert len(response.json()["history"]) == 2


def test_revocation_wins_from_then_on_and_history_is_kept(alice, lead):
    path = f"/v1/leads/{lead['id']}/consents"
    alice.post(path, {**record("data.profiling"), "captured_at": _at(hours=-1)})
    ledger = alice.post(path, record("data.profiling", granted=False)).json()
    assert ledger["current"]["data.profiling"]["state"] == "revoked"
    assert [r["granted"] for r in ledger["history"]] == [False, True]
    assert ConsentRecord.objects.count() == 2  # appended, never updated


def test_expired_grant_counts_as_not_granted(alice):
    lead = LeadFactory(tenant=alice.tenant)
    ConsentRecordFactory(
        lead=lead,
        scope="payment.processing",
        captured_at=timezone.now() - timedelta(days=10),
        expires_at=timezone.now() - timedelta(days=1),
    )
    state = alice.get(f"/v1/leads/{lead.id}/consents").json()["current"]["payment.processing"]
    assert state["state"] == "expired" and state["granted"] is False
    with pytest.raises(errors.ConsentRequired) as raised:
        consent_require(lead=lead, scopes=("payment.processing", "data.profiling"))
    assert raised.value.extra["missing_scopes"] == ["payment.processing", "data.profiling"]


def test_gate_passes_when_granted(alice):
    lead = LeadFactory(tenant=alice.tenant)
    ConsentRecordFactory(lead=lead, scope="data.profiling")
    consent_require(lead=lead, scopes=("data.profiling",))
    assert consent_state(lead=lead)["data.profiling"].granted


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (record(scope="telepathy"), "scope", "invalid_choice"),
        (record(granted="maybe"), "granted", "invalid"),
        ({**record(), "captured_at": "last tuesday"}, "captured_at", "invalid"),
        ({**record(), "captured_at": _at(days=1)}, "captured_at", "in_future"),
        (record(expires_at=_at(days=-1)), "expires_at", "before_capture"),
        (record(colour="red"), "colour", "unknown_field"),
        ({"consents": []}, "consents", "min_length"),
        ({"consents": [record()] * 21}, "consents", "max_length"),
        ({"scope": "contact.email"}, "granted", "required"),
    ],
)
def test_bad_records_are_422_and_append_nothing(alice, lead, body, field, code):
    response = alice.post(f"/v1/leads/{lead['id']}/consents", body)
    errors_ = problem(response, 422, "validation_error")["errors"]
    assert field in [e["field"] for e in errors_], errors_
    assert code in [e["code"] for e in errors_ if e["field"] == field], errors_
    assert not ConsentRecord.objects.exists()


def test_cross_tenant_is_404_both_ways(alice, charlie, lead):
    problem(charlie.get(f"/v1/leads/{lead['id']}/consents"), 404, "not_found")
    problem(charlie.post(f"/v1/leads/{lead['id']}/consents", record()), 404, "not_found")
    assert not ConsentRecord.objects.exists()


def test_scopes_are_enforced(alice, lead):
    reader = make_api("alice", scopes=["leads:read"])
    assert (
        problem(
            reader.post(f"/v1/leads/{lead['id']}/consents", record()), 403, "permission_denied"
        )["required_scope"]
        == "leads:write"
    )
    writer = make_api("alice", scopes=["leads:write"])
    assert (
        problem(writer.get(f"/v1/leads/{lead['id']}/consents"), 403, "permission_denied")[
            "required_scope"
        ]
        == "leads:read"
    )


def test_replayed_append_appends_once(alice, lead):
    path = f"/v1/leads/{lead['id']}/consents"
    body = record()
    first = alice.post(path, body, idempotency_key="consent-1")
    replay = alice.post(path, body, idempotency_key="consent-1")
    assert first.status_code == replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert ConsentRecord.objects.count() == 1


def test_closed_lead_refuses_appends(alice):
    lead = LeadFactory(tenant=alice.tenant, stage=Stage.VERIFIED_PAID)
    problem(alice.post(f"/v1/leads/{lead.id}/consents", record()), 409, "lead_closed")
    assert alice.get(f"/v1/leads/{lead.id}/consents").status_code == 200
