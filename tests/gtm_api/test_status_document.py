"""The status document the API sends is, byte for byte, what `LeadStatusOutput` renders from the
lead's model instances, for leads in every stage with long histories; on PostgreSQL its one
query reads the same rows as the portable per-table queries."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent.models import CONSENT_SCOPES
from gtm_api.models import (
    Appointment,
    Assignment,
    CaseOpened,
    Lead,
    Payment,
    Qualification,
    Rep,
    Stage,
    StageTransition,
    Team,
)
from gtm_api.selectors.status import lead_status, lead_status_rows
from gtm_api.status_serializers import LeadStatusOutput, lead_status_document
from neuronx import errors
from neuronx.models import Tenant
from neuronx.renderers import JsonRenderer
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db

# The paths this database has: the one-query path is PostgreSQL's (CI runs the suite on both).
PATHS = [False, True] if connection.vendor == "postgresql" else [False]
PATH = [
    Stage.NEW,
    Stage.QUALIFIED,
    Stage.ROUTED,
    Stage.APPOINTMENT_SCHEDULED,
    Stage.PAYMENT_PENDING,
    Stage.VERIFIED_PAID,
]
# Whole seconds, trailing zeros and single microseconds: ISO 8601 renders each differently.
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
TICKS = [timedelta(0), timedelta(microseconds=120000), timedelta(microseconds=5)]
# Text JSON writes as it is, escaped, or as the renderer alone escapes it (U+2028).
NOTES = ["", "called\ttwice\x01 \u2028 \U0001f600", "bring the \u00bbcontract\u00ab"]


def _at(hours: float, tick: int = 0) -> datetime:
    return T0 + timedelta(hours=hours) + TICKS[tick % len(TICKS)]


def _set(model: Any, pk: Any, **values: Any) -> None:
    """Timestamps the models set themselves (`auto_now*`), set to chosen values."""
    model.objects.filter(pk=pk).update(**values)


def _rich_lead(tenant: Tenant, stage: str) -> Lead:
    """A lead in `stage` with every record its stage implies, several of each, ties included."""
    reached = PATH[: PATH.index(stage) + 1] if stage in PATH else [Stage.NEW, Stage.DISQUALIFIED]
    lead = LeadFactory(
        tenant=tenant,
        stage=stage,
        score=None if stage == Stage.NEW else 73,
        owner="ada.l" if Stage.ROUTED in reached else None,
    )
    for i, (before, after) in enumerate(pairwise(reached)):
        transition = StageTransition.objects.create(
            tenant=tenant,
            lead=lead,
            from_stage=before,
            to_stage=after,
            cause="api" if i % 2 else "payment_verified",
            actor="key:crm-sync",
            request_id=f"req_{i}" if i % 2 else "",
        )
        # The first two transitions share a time: the id decides.
        _set(StageTransition, transition.pk, at=_at(min(i, 1), tick=i))

    if len(reached) > 1:
        for i, (score, created) in enumerate([(40, _at(0.5)), (73, _at(1, 1)), (71, _at(1, 1))]):
            qualification = Qualification.objects.create(
                tenant=tenant,
                lead=lead,
                score=score,
                qualified=stage != Stage.DISQUALIFIED,
                grade="B",
                factors=[
                    {"name": "company_size", "points": 30 + i, "reason": "120 employees — Zoë"},
                    {"name": "title", "points": -5, "reason": 'VP "Engineering"\n'},
                    # Not the shape scoring writes today: rendered by DRF's rules all the same.
                    {"name": "legacy", "points": 2.5, "reason": None, "weight": 1},
                ],
                model_version="default-v3",
            )
            _set(Qualification, qualification.pk, created_at=created)
    if Stage.ROUTED in reached:
        team = Team.objects.create(tenant=tenant, key=f"emea-{stage}", name="EMEA")
        rep = Rep.objects.create(tenant=tenant, team=team, key="ada.l", name="Ada")
        for i in range(3):
            assignment = Assignment.objects.create(
                tenant=tenant,
                lead=lead,
                rep=rep,
                owner=f"owner-{i}",
                team=team.key,
                rule="EMEA enterprise" if i else "fallback",
                strategy="round_robin",
                reason=f"rule {i} matched",
            )
            _set(Assignment, assignment.pk, created_at=_at(2, tick=min(i, 1)))
    appointments = []
    if Stage.APPOINTMENT_SCHEDULED in reached:
        for i, (status, starts) in enumerate(
            [("canceled", _at(30)), ("no_show", _at(26, 2)), ("scheduled", _at(30))]
        ):
            appointment = Appointment.objects.create(
                tenant=tenant,
                lead=lead,
                starts_at=starts,
                ends_at=starts + timedelta(minutes=45),
                timezone="Europe/Berlin",
                channel=["video", "phone", "in_person"][i],
                location=["https://meet.example/x", "", "Unter den Linden 1, Berlin"][i],
                notes=NOTES[i],
                status=status,
            )
            _set(Appointment, appointment.pk, created_at=_at(3, i), updated_at=_at(4, i + 1))
            appointments.append(appointment)
    if Stage.PAYMENT_PENDING in reached:
        payments = []
        for i, status in enumerate(["canceled", "failed", "initiated"]):
            payment = Payment.objects.create(
                tenant=tenant,
                lead=lead,
                appointment=appointments[2] if i == 2 else None,
                amount=10**12 + i if i == 1 else 1999,
                currency="EUR" if i else "JPY",
                description="Onboarding" if i else "",
                status=status,
                provider="builtin",
                checkout_reference=f"chk_{i}",
                checkout_url=f"https://pay.example/chk_{i}" if i != 1 else "",
                previous_stage=Stage.APPOINTMENT_SCHEDULED,
                failure_reason="card_declined" if status == "failed" else "",
                expires_at=_at(48, i),
            )
            _set(Payment, payment.pk, created_at=_at(5, i), updated_at=_at(6, i))
            payments.append(payment)
        if stage == Stage.VERIFIED_PAID:
            _set(Payment, payments[2].pk, status="verified", verified_at=_at(7, 1))
            case = CaseOpened.objects.create(tenant=tenant, lead=lead, payment=payments[2])
            _set(CaseOpened, case.pk, opened_at=_at(7, 2))

    now = timezone.now()
    ledger = [
        ("contact.email", True, _at(0), None),  # granted
        ("contact.sms", True, _at(0), _at(1)),  # expired long ago
        ("contact.phone", True, _at(0), None),
        ("contact.phone", False, _at(3, 1), None),  # then revoked
        # Two captures at the same time: the one recorded last wins (granted).
        ("payment.processing", False, _at(2), None),
        ("payment.processing", True, _at(2), now + timedelta(days=30)),
        # Captured in the future: not yet in force, so profiling is still not captured.
        ("data.profiling", True, now + timedelta(days=1), None),
    ]
    for scope, granted, captured_at, expires_at in ledger:
        ConsentRecordFactory(
            lead=lead, scope=scope, granted=granted, captured_at=captured_at, expires_at=expires_at
        )
    return lead


@pytest.fixture
def leads(alice: Any) -> list[Lead]:
    return [_rich_lead(alice.tenant, stage) for stage in Stage.values]


def _drf_document(tenant: Tenant, lead_id: str) -> bytes:
    """What the API sent before: DRF's `LeadStatusOutput` over `lead_status`'s instances."""
    return JsonRenderer().render(LeadStatusOutput(lead_status(tenant=tenant, lead_id=lead_id)).data)


def _document(tenant: Tenant, lead_id: str, **options: Any) -> bytes:
    rows = lead_status_rows(tenant=tenant, lead_id=lead_id, **options)
    return JsonRenderer().render(lead_status_document(rows))


def test_the_document_is_drfs_byte_for_byte_in_every_stage(alice: Any, leads: list[Lead]) -> None:
    for lead in leads:
        expected = _drf_document(alice.tenant, lead.id)
        assert _document(alice.tenant, lead.id) == expected
        response = alice.get(f"/v1/leads/{lead.id}/status")
        assert response.status_code == 200
        assert response.content == expected

    verified = alice.get(f"/v1/leads/{leads[-1].id}/status").json()
    assert verified["stage"] == "verified_paid"
    assert verified["boundary"]["case_opened_at"] == "2026-03-01T16:30:00.000005Z"
    assert [a["status"] for a in verified["appointments"]] == ["no_show", "canceled", "scheduled"]
    assert [p["status"] for p in verified["payments"]] == ["canceled", "failed", "verified"]
    assert verified["payments"][1]["amount"] == 10**12 + 1
    tied = Qualification.objects.filter(lead_id=leads[-1].id, created_at=_at(1, 1))
    assert verified["qualification"]["score"] == max(tied, key=lambda q: q.id).score
    assert verified["qualification"]["qualified_at"] == "2026-03-01T10:30:00.120000Z"
    assert verified["qualification"]["factors"][2] == {
        "name": "legacy",
        "points": 2,
        "reason": None,
    }
    assert verified["consent"] == {
        "contact.email": "granted",
        "contact.sms": "expired",
        "contact.phone": "revoked",
        "data.profiling": "not_captured",
        "payment.processing": "granted",
    }
    assert list(verified["consent"]) == list(CONSENT_SCOPES)
    assert len(verified["history"]) == 5
    new = alice.get(f"/v1/leads/{leads[0].id}/status").json()
    assert new["qualification"] is new["assignment"] is new["score"] is new["owner"] is None
    assert new["appointments"] == new["payments"] == new["history"] == []
    assert new["boundary"] == {"verified_paid": False, "case_opened_at": None, "case_id": None}


@pytest.mark.parametrize("one_query", PATHS)
def test_every_path_reads_what_the_per_table_queries_read(
    alice: Any, leads: list[Lead], one_query: bool
) -> None:
    for lead in leads:
        rows = lead_status_rows(tenant=alice.tenant, lead_id=lead.id, one_query=one_query)
        per_table = lead_status_rows(tenant=alice.tenant, lead_id=lead.id, one_query=False)
        assert rows == per_table
        rendered = _document(alice.tenant, lead.id, one_query=one_query)
        assert rendered == _drf_document(alice.tenant, lead.id)


@pytest.mark.parametrize("one_query", PATHS)
def test_the_query_count_does_not_grow_with_history(
    alice: Any, leads: list[Lead], one_query: bool
) -> None:
    counts = []
    for lead in (leads[0], leads[-1]):  # no history at all; the longest
        with CaptureQueriesContext(connection) as queries:
            lead_status_rows(tenant=alice.tenant, lead_id=lead.id, one_query=one_query)
        counts.append(len(queries))
    assert counts == ([1, 1] if one_query else [7, 7])


@pytest.mark.parametrize("one_query", PATHS)
def test_another_tenants_lead_is_not_found(
    alice: Any, bob: Any, leads: list[Lead], one_query: bool
) -> None:
    with pytest.raises(errors.NotFound):
        lead_status_rows(tenant=bob.tenant, lead_id=leads[-1].id, one_query=one_query)
    with pytest.raises(errors.NotFound):
        lead_status_rows(tenant=alice.tenant, lead_id="lead_NOPE", one_query=one_query)


def test_consent_expiry_is_that_of_the_request_time(alice: Any) -> None:
    lead = LeadFactory(tenant=alice.tenant)
    now = timezone.now()
    ConsentRecordFactory(lead=lead, scope="contact.sms", expires_at=now + timedelta(hours=1))
    assert alice.get(f"/v1/leads/{lead.id}/status").json()["consent"]["contact.sms"] == "granted"
    with mock.patch("django.utils.timezone.now", return_value=now + timedelta(hours=2)):
        later = alice.get(f"/v1/leads/{lead.id}/status")
        assert later.content == _drf_document(alice.tenant, lead.id)
    assert later.json()["consent"]["contact.sms"] == "expired"
