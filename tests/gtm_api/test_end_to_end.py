"""A lead walked through the whole contract, from ingestion to the case hand-off."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from gtm_api.management.commands.seed_demo import DEMO_ROUTING
from gtm_api.services.routing import routing_config_install
from tests.conftest import problem
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def test_ingestion_to_case_opened(alice):
    routing_config_install(tenant=alice.tenant, config=DEMO_ROUTING)
    now = timezone.now().isoformat()
    consents = [
        {"scope": s, "granted": True, "captured_at": now, "source": "web_form"}
        for s in ("data.profiling", "contact.email", "payment.processing")
    ]
    lead = alice.post(
        "/v1/leads",
        {
            "email": "ada@analytical-engines.com",
            "phone": "+442079460958",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines",
            "job_title": "Engineer",
            "country": "GB",
            "source": "web_form",
            "consents": consents,
        },
    ).json()
    lead_path = f"/v1/leads/{lead['id']}"

    qualification = alice.post(f"{lead_path}/qualify").json()
    assert qualification["qualified"] is True and qualification["score"] >= 60

    route = alice.post(f"{lead_path}/route")
    assert route.status_code == 200, route.content
    assert route.json()["owner"]

    start = timezone.now() + timedelta(days=2)
    appointment = alice.post(
        "/v1/appointments",
        {
            "lead_id": lead["id"],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=45)).isoformat(),
            "timezone": "Europe/London",
            "channel": "video",
            "location": "https://meet.example.com/ada",
        },
    )
    assert appointment.status_code == 201, appointment.content

    payment = alice.post(
        "/v1/payments",
        {"lead_id": lead["id"], "amount": 250000, "currency": "GBP", "description": "Annual plan"},
    )
    assert payment.status_code == 201, payment.content
    assert payment.json()["status"] == "initiated"

    call_command("verify_payment", payment.json()["id"], stdout=StringIO())

    status = alice.get(f"{lead_path}/status").json()
    assert status["stage"] == "verified_paid"
    assert status["boundary"]["verified_paid"] is True and status["boundary"]["case_id"]
    assert [h["to_stage"] for h in status["history"]] == [
        "qualified",
        "routed",
        "appointment_scheduled",
        "payment_pending",
        "verified_paid",
    ]
    assert status["qualification"]["score"] == qualification["score"]
    assert status["assignment"]["owner"] == route.json()["owner"]

    # Read-only from now on.
    problem(alice.patch(lead_path, {"first_name": "Augusta"}), 409, "lead_closed")
    problem(alice.post(f"{lead_path}/qualify"), 409, "lead_closed")
    problem(alice.post(f"{lead_path}/route"), 409, "lead_closed")

    types = list(
        Event.objects.filter(tenant=alice.tenant)
        .order_by("created_at", "id")
        .values_list("type", flat=True)
    )
    assert types == [
        "lead.created",
        "lead.qualified",
        "lead.routed",
        "appointment.created",
        "payment.initiated",
        "payment.verified",
        "case.opened",
    ]

    out = StringIO()
    call_command("usage_report", "--tenant", "alice", "--format", "json", stdout=out)
    totals = {row["dimension"]: row["quantity"] for row in json.loads(out.getvalue())}
    assert totals == {
        "lead.ingested": 1,
        "lead.qualified": 1,
        "lead.routed": 1,
        "appointment.created": 1,
        "payment.initiated": 1,
    }
    assert UsageEvent.objects.filter(tenant=alice.tenant).count() == 5
