"""No API key, webhook secret, or full email/phone reaches the logs, on success or on failure."""

import io
import logging
from collections.abc import Iterator

import pytest

from gtm_api.services import leads as lead_services
from neuronx.logging import JsonFormatter
from tests.conftest import lead_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    handler = next(
        h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)
    )
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_secrets_and_contact_details_stay_out_of_the_logs(alice, log_text, settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    email, phone = "ada.secret@analytical-engines.com", "+442079460958"
    lead = alice.post("/v1/leads", lead_body(email=email, phone=phone))
    assert lead.status_code == 201
    alice.post("/v1/leads", lead_body(email=email, phone=phone))  # 409 lead_exists
    alice.get("/v1/leads", {"email": email})
    alice.post("/v1/leads", lead_body(email="not-an-email", phone=phone))  # 422
    subscription = alice.post(
        "/v1/webhook-subscriptions",
        {"url": "https://127.0.0.1:9/hooks", "event_types": ["lead.created"]},
    )
    assert subscription.status_code == 201, subscription.content
    rotated = alice.post(f"/v1/webhook-subscriptions/{subscription.json()['id']}/rotate-secret")
    secrets = [subscription.json()["secret"], rotated.json()["secret"]]

    def explode(**kwargs):
        raise RuntimeError(f"boom while saving {kwargs['data'].get('email')}")

    monkeypatch.setattr("gtm_api.api.leads.lead_create", explode)
    failed = alice.post("/v1/leads", lead_body(email="second@acme-corp.com"))
    assert failed.status_code == 500
    monkeypatch.setattr("gtm_api.api.leads.lead_create", lead_services.lead_create)

    logged = log_text.getvalue()
    assert logged, "nothing was logged: the test would prove nothing"
    assert '"status": 500' in logged
    assert "[email]" in logged  # the fault's message quoted an address, which was redacted
    for secret in [alice.key, *secrets, email, phone, "442079460958", "second@acme-corp.com"]:
        assert secret not in logged, f"{secret[:6]}… appears in the logs"


def test_redaction_keeps_ordinary_values():
    from neuronx.logging import redact

    line = '{"at": "2026-11-28T13:28:47.908909+00:00", "duration_ms": 2.5, "path": "/v1/leads/lead_01M8H5"}'
    assert redact(line) == line
    assert redact("call +44 20 7946 0958 or mail a.b@c.io") == "call [phone] or mail [email]"
