"""`X-Request-ID`: echoed when safe, minted otherwise, on every response, log line and usage event."""

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import gtm_api.api.leads
from neuronx.logging import JsonFormatter
from neuronx.models import IdempotencyRecord
from tests.conftest import lead_body, problem
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^req_[0-9a-f]{32}$")


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Reads back, parsed, the JSON lines the configured root handler wrote during the test."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert handlers, "settings.LOGGING configures no JSON handler on the root logger"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    finally:
        handler.setStream(previous)


@pytest.mark.parametrize(
    "sent",
    ["abc-123", "7f0e5b7c-3a1d-4c9e-9f8a-2b6d0c1e4f5a", "trace:1/2@edge+a=b_c.d", "x" * 128],
)
def test_a_safe_request_id_is_echoed(alice, sent):
    response = alice.get("/v1/leads", **{"X-Request-ID": sent})
    assert response.status_code == 200
    assert response["X-Request-ID"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        "x" * 129,
        "has space",
        "<script>alert(1)</script>",
        "a;b",
        'quote"d',
        "semi,colon",
        "new\\nline",
    ],
)
def test_an_unsafe_or_long_request_id_is_replaced(alice, sent):
    response = alice.get("/v1/leads", **{"X-Request-ID": sent})
    assert response.status_code == 200
    assert response["X-Request-ID"] != sent
    assert GENERATED.match(response["X-Request-ID"])


def test_an_empty_request_id_is_replaced(alice):
    assert GENERATED.match(alice.get("/v1/leads", **{"X-Request-ID": ""})["X-Request-ID"])


def test_a_request_id_is_generated_when_absent_and_unique(alice):
    ids = {alice.get("/v1/leads")["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    assert all(GENERATED.match(i) for i in ids)


def test_error_responses_carry_the_request_id_in_header_and_body(
    alice, anonymous, settings, monkeypatch
):
    def explode(**kwargs):
        raise RuntimeError("boom")

    sent = {"X-Request-ID": "trace-42"}
    cases = [
        (anonymous.get("/v1/leads", **sent), 401, "authentication_failed"),
        (alice.get("/v1/nowhere", **sent), 404, "not_found"),
        (alice.get("/v1/leads/lead_NOPE", **sent), 404, "not_found"),
        (alice.send("DELETE", "/v1/leads", headers=sent), 405, "method_not_allowed"),
        (alice.post("/v1/leads", lead_body(email="bad"), headers=sent), 422, "validation_error"),
        (
            alice.post("/v1/leads", lead_body(), idempotency_key=None, headers=sent),
            400,
            "idempotency_key_required",
        ),
    ]
    settings.MAX_REQUEST_BODY_BYTES = 10
    cases.append((alice.post("/v1/leads", lead_body(), headers=sent), 413, "payload_too_large"))
    settings.MAX_REQUEST_BODY_BYTES = 1_000_000
    monkeypatch.setattr(gtm_api.api.leads, "lead_create", explode)
    cases.append((alice.post("/v1/leads", lead_body(), headers=sent), 500, "internal_error"))
    for response, status, code in cases:
        body = problem(response, status, code)
        assert body["request_id"] == "trace-42" == response["X-Request-ID"], code


def test_a_generated_request_id_is_in_the_problem_body(anonymous):
    response = anonymous.get("/v1/leads")
    body = problem(response, 401, "authentication_failed")
    assert GENERATED.match(body["request_id"])


def test_the_access_log_line_is_json_with_the_request_id(alice, log_lines):
    response = alice.get("/v1/leads", **{"X-Request-ID": "trace-log-1"})
    generated = alice.get("/v1/leads/lead_NOPE")
    access = [line for line in log_lines() if line["logger"] == "neuronx.access"]
    assert [(line["request_id"], line["status"]) for line in access] == [
        ("trace-log-1", 200),
        (generated["X-Request-ID"], 404),
    ]
    first = access[0]
    assert first["method"] == "GET" and first["path"] == "/v1/leads"
    assert first["tenant_id"] == alice.tenant.id
    assert isinstance(first["duration_ms"], float | int)
    assert response.status_code == 200


def test_lines_logged_inside_the_request_carry_its_request_id(alice, log_lines, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", explode)
    alice.post("/v1/leads", lead_body(), headers={"X-Request-ID": "trace-fault"})
    errors = [line for line in log_lines() if line["level"] == "ERROR"]
    assert errors, log_lines()
    assert {line["request_id"] for line in errors} == {"trace-fault"}
    assert "RuntimeError: boom" in errors[0]["exception"]


def test_no_request_id_leaks_into_lines_logged_after_the_request(alice, log_lines):
    alice.get("/v1/leads", **{"X-Request-ID": "trace-done"})
    logging.getLogger("neuronx.test").warning("between requests")
    outside = [line for line in log_lines() if line["logger"] == "neuronx.test"]
    assert [line["request_id"] for line in outside] == [None]


def test_usage_events_webhook_events_and_idempotency_records_carry_it(alice):
    response = alice.post(
        "/v1/leads", lead_body(), headers={"X-Request-ID": "trace-usage"}, idempotency_key="k"
    )
    assert response.status_code == 201
    assert UsageEvent.objects.get().request_id == "trace-usage"
    assert Event.objects.get().request_id == "trace-usage"
    assert IdempotencyRecord.objects.get().request_id == "trace-usage"


def test_usage_events_carry_a_generated_request_id_too(alice):
    response = alice.post("/v1/leads", lead_body())
    assert UsageEvent.objects.get().request_id == response["X-Request-ID"]


def test_a_replay_answers_with_the_new_request_id(alice):
    alice.post("/v1/leads", lead_body(), idempotency_key="k", headers={"X-Request-ID": "first"})
    again = alice.post(
        "/v1/leads", lead_body(), idempotency_key="k", headers={"X-Request-ID": "second"}
    )
    assert again["Idempotent-Replayed"] == "true"
    assert again["X-Request-ID"] == "second"
    assert UsageEvent.objects.get().request_id == "first"
