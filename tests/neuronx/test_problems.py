"""RFC 9457 problem documents for routing errors, server faults and oversized bodies."""

import re

import pytest
from django.db import DatabaseError, OperationalError

import gtm_api.api.leads
from gtm_api.models import Lead
from gtm_api.services.leads import lead_create as real_lead_create
from neuronx import errors
from neuronx.errors import CATALOG
from neuronx.models import IdempotencyRecord
from tests.conftest import lead_body, problem
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db

SECRET = "secret SQL: SELECT key_hash FROM neuronx_apikey WHERE prefix = 'abc'"


@pytest.mark.parametrize(
    "path", ["/v1/nope", "/v1/leads/lead_1/nope", "/v1/leads/", "/v2/leads", "/", "/admin/"]
)
def test_unknown_route_is_404_problem(alice, path):
    body = problem(alice.get(path), 404, "not_found")
    assert body["type"] == "https://docs.neuronx.io/errors#not_found"


def test_unknown_route_is_404_for_any_method_and_without_auth(anonymous):
    problem(anonymous.post("/v1/nothing-here", {"a": 1}), 404, "not_found")
    problem(anonymous.send("DELETE", "/elsewhere", idempotency_key=None), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/leads", {"GET", "POST", "HEAD"}),
        ("PUT", "/v1/leads", {"GET", "POST", "HEAD"}),
        ("PUT", "/v1/leads/lead_x", {"GET", "PATCH", "HEAD"}),
        ("DELETE", "/v1/leads/lead_x", {"GET", "PATCH", "HEAD"}),
        ("PATCH", "/v1/leads", {"GET", "POST", "HEAD"}),
        ("POST", "/v1/leads/lead_x", {"GET", "PATCH", "HEAD"}),
        ("OPTIONS", "/v1/leads", {"GET", "POST", "HEAD"}),
    ],
)
def test_wrong_verb_is_405_with_allow(alice, method, path, allow):
    response = alice.send(method, path, {"first_name": "Eve"})
    problem(response, 405, "method_not_allowed")
    assert {m.strip() for m in response["Allow"].split(",")} == allow
    assert not Lead.objects.exists()


def test_unexpected_exception_is_500_without_internals(alice, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", explode)
    response = alice.post("/v1/leads", lead_body())
    body = problem(response, 500, "internal_error")
    text = response.content.decode()
    for leak in ("secret", "SELECT", "neuronx_apikey", "Traceback", "RuntimeError", 'File "'):
        assert leak not in text, text
    assert set(body) == {"type", "title", "status", "detail", "code", "request_id"}


def test_a_database_error_is_500_without_sql(alice, monkeypatch):
    def explode(**kwargs):
        raise DatabaseError(f'relation "gtm_api_lead" does not exist: {SECRET}')

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", explode)
    response = alice.post("/v1/leads", lead_body())
    problem(response, 500, "internal_error")
    assert b"gtm_api_lead" not in response.content and b"SELECT" not in response.content


def test_an_unreachable_database_is_503_with_retry_after(alice, monkeypatch):
    def explode(**kwargs):
        raise OperationalError(f"could not connect to server at 10.0.0.5: {SECRET}")

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", explode)
    response = alice.post("/v1/leads", lead_body())
    problem(response, 503, "service_unavailable")
    assert int(response["Retry-After"]) > 0
    assert b"10.0.0.5" not in response.content


def test_a_fault_rolls_back_everything_the_action_wrote(alice, monkeypatch):
    def create_then_explode(**kwargs):
        real_lead_create(**kwargs)
        raise RuntimeError(SECRET)

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", create_then_explode)
    problem(alice.post("/v1/leads", lead_body()), 500, "internal_error")
    assert not Lead.objects.exists()
    assert not UsageEvent.objects.exists()
    assert not Event.objects.exists()


def test_a_500_is_not_stored_under_its_idempotency_key(alice, monkeypatch):
    def create_then_explode(**kwargs):
        real_lead_create(**kwargs)
        raise RuntimeError(SECRET)

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", create_then_explode)
    problem(alice.post("/v1/leads", lead_body(), idempotency_key="retry-me"), 500, "internal_error")
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    retry = alice.post("/v1/leads", lead_body(), idempotency_key="retry-me")
    assert retry.status_code == 201, retry.content
    assert not retry.has_header("Idempotent-Replayed")
    assert Lead.objects.count() == 1
    assert IdempotencyRecord.objects.get().response_status == 201


def test_a_5xx_returned_by_an_action_is_not_stored_either(alice, monkeypatch):
    def unavailable(**kwargs):
        raise errors.ServiceUnavailable("The scoring backend is down.")

    monkeypatch.setattr(gtm_api.api.leads, "lead_create", unavailable)
    problem(alice.post("/v1/leads", lead_body(), idempotency_key="k"), 503, "service_unavailable")
    assert not IdempotencyRecord.objects.exists()


def test_a_body_over_the_request_limit_is_413(alice, settings):
    settings.MAX_REQUEST_BODY_BYTES = 200
    body = lead_body(company="x" * 150)
    response = alice.post("/v1/leads", body)
    problem(response, 413, "payload_too_large")
    assert "200 bytes" in response.json()["detail"]
    assert not Lead.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    # Under the limit the same route works.
    settings.MAX_REQUEST_BODY_BYTES = 10_000
    assert alice.post("/v1/leads", body).status_code == 201


def test_the_request_limit_is_enforced_before_routing_and_auth(anonymous, settings):
    settings.MAX_REQUEST_BODY_BYTES = 10
    problem(anonymous.post("/v1/nowhere", {"padding": "x" * 50}), 413, "payload_too_large")


def test_problem_members_come_from_the_catalog(alice):
    body = problem(alice.post("/v1/leads", lead_body(email="nope")), 422, "validation_error")
    entry = CATALOG["validation_error"]
    assert (body["type"], body["title"], body["status"]) == (
        entry.type_uri,
        entry.title,
        entry.status,
    )
    assert body["errors"] == [
        {
            "field": "email",
            "code": body["errors"][0]["code"],
            "message": body["errors"][0]["message"],
        }
    ]


def test_every_api_error_has_a_catalog_entry():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    listed = [entry.code for entry in errors._CODES]
    assert sorted(c for c in set(listed) if listed.count(c) > 1) == [], "codes listed twice"
    classes = list(subclasses(errors.ApiError))
    assert {cls.code for cls in classes} <= set(CATALOG)
    for code, entry in CATALOG.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code)
        assert entry.code == code
        assert 400 <= entry.status < 600
        assert entry.meaning and entry.title
