"""Contract promises that hold for every operation, proven by sweeping the URLconf.

Each test here backs a row of docs/traceability.md that no endpoint-group module proves on its own:
which operations are consent-gated, the headers every answer carries, the pagination of every list,
and the members of a usage event.
"""

import inspect
import re

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from consent.models import ConsentRecord
from gtm_api.management.commands.seed_demo import DEMO_ROUTING
from gtm_api.services.routing import routing_config_install
from neuronx.operations import operation
from neuronx.pagination import DEFAULT_LIMIT, MAX_LIMIT
from neuronx.routes import api_operations
from tests.conftest import Api, lead_body, problem
from tests.factories import LeadFactory
from usage.models import UsageEvent

pytestmark = pytest.mark.django_db

OPERATIONS = [op for op in api_operations() if op.operation is not None]

# The consent table of the contract (§3): every other operation requires none.
CONSENT_GATES = {
    ("POST", "/v1/leads/{id}/qualify"): {"data.profiling"},
    ("POST", "/v1/appointments"): {"contact.phone", "contact.email"},
    ("PATCH", "/v1/appointments/{id}"): {"contact.phone", "contact.email"},
    ("POST", "/v1/payments"): {"payment.processing"},
}
# The lists the contract names; the sweep below must find at least these.
CONTRACT_LISTS = {
    "/v1/leads",
    "/v1/appointments",
    "/v1/payments",
    "/v1/lead-imports",
    "/v1/lead-imports/{id}/errors",
    "/v1/webhook-subscriptions",
    "/v1/webhook-subscriptions/{id}/deliveries",
}


def _call(api: Api, method: str, path: str, body: object = None):
    if method == "GET":
        return api.get(path)
    if method == "DELETE":
        return api.client.delete(path, headers=api._headers(None))
    return api.send(method, path, body)


def test_only_the_contract_gates_require_consent():
    # `consent` has no default: every declaration states its consent, `NO_CONSENT` included.
    assert inspect.signature(operation).parameters["consent"].default is inspect.Parameter.empty
    declared = {(op.method, op.path): set(op.operation.consent) for op in OPERATIONS}
    assert set(CONSENT_GATES) <= set(declared)
    for key, consent in declared.items():
        assert consent == CONSENT_GATES.get(key, set()), key


def test_ingestion_routing_reads_and_webhooks_work_without_any_consent(alice, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    routing_config_install(tenant=alice.tenant, config=DEMO_ROUTING)

    created = alice.post("/v1/leads", lead_body())
    assert created.status_code == 201, created.content
    lead_id = created.json()["id"]
    assert alice.patch(f"/v1/leads/{lead_id}", {"job_title": "CTO"}).status_code == 200
    imported = alice.post("/v1/lead-imports", {"leads": [lead_body(email="b@acme-corp.com")]})
    assert imported.status_code == 202, imported.content
    qualified = LeadFactory(tenant=alice.tenant, stage="qualified")
    routed = alice.post(f"/v1/leads/{qualified.id}/route")
    assert routed.status_code == 200, routed.content
    for path in (f"/v1/leads/{lead_id}", f"/v1/leads/{lead_id}/status", "/v1/leads"):
        assert alice.get(path).status_code == 200, path
    hook = alice.post(
        "/v1/webhook-subscriptions",
        {"url": "https://127.0.0.1:9/hook", "event_types": ["lead.created"]},
    )
    assert hook.status_code == 201, hook.content
    assert not ConsentRecord.objects.exists()

    # The same lead is refused where the contract gates: the gate is real, not absent.
    body = problem(alice.post(f"/v1/leads/{lead_id}/qualify"), 403, "consent_required")
    assert body["missing_scopes"] == ["data.profiling"]


def test_every_operation_answers_with_a_request_id_and_its_rate_limit_headers(alice):
    for declared in OPERATIONS:
        path = re.sub(r"\{\w+\}", "missing_01", declared.path)
        response = _call(alice, declared.method, path, {})
        where = (declared.method, declared.path, response.status_code)
        assert response.status_code < 500, where
        assert response["X-Request-ID"].startswith("req_"), where
        rate_class = declared.operation.rate_class
        assert response["RateLimit-Policy"].startswith(f'"{rate_class}";q='), where
        assert re.fullmatch(rf'"{rate_class}";r=\d+;t=\d+', response["RateLimit"]), where


def _paginated_paths() -> set[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        path
        for path, methods in schema["paths"].items()
        if "Paginated"
        in methods.get("get", {})
        .get("responses", {})
        .get("200", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref", "")
    }


def test_every_list_is_cursor_paginated_within_the_limit_bounds(alice, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    job = alice.post("/v1/lead-imports", {"leads": [lead_body()]}).json()
    hook = alice.post(
        "/v1/webhook-subscriptions",
        {"url": "https://127.0.0.1:9/hook", "event_types": ["lead.created"]},
    ).json()
    ids = {"lead-imports": job["id"], "webhook-subscriptions": hook["id"]}
    lists = _paginated_paths()
    assert lists >= CONTRACT_LISTS

    for template in sorted(lists):
        path = re.sub(r"\{id\}", lambda _: ids[template.split("/")[2]], template)
        page = alice.get(path)
        assert page.status_code == 200, (template, page.content)
        assert set(page.json()) == {"results", "next", "previous"}, template
        assert alice.get(path, {"limit": MAX_LIMIT}).status_code == 200, template
        for limit in (0, MAX_LIMIT + 1):
            problem(alice.get(path, {"limit": limit}), 422, "validation_error")
        problem(alice.get(path, {"cursor": "not-a-cursor"}), 400, "malformed_request")

    for _ in range(DEFAULT_LIMIT + 1):
        LeadFactory(tenant=alice.tenant)
    first = alice.get("/v1/leads").json()
    assert len(first["results"]) == DEFAULT_LIMIT and first["next"] and first["previous"] is None
    rest = alice.get(first["next"]).json()
    seen = {lead["id"] for lead in first["results"] + rest["results"]}
    assert len(seen) == DEFAULT_LIMIT + 1


def test_a_usage_event_records_what_the_contract_lists(alice):
    before = timezone.now()
    response = alice.post("/v1/leads", lead_body(), headers={"X-Request-ID": "crm-sync-42"})
    assert response.status_code == 201, response.content
    event = UsageEvent.objects.get()
    assert event.tenant == alice.tenant
    assert (event.dimension, event.quantity) == ("lead.ingested", 1)
    assert before <= event.occurred_at <= timezone.now()
    assert event.request_id == response["X-Request-ID"] == "crm-sync-42"
    assert event.api_key == alice.api_key
    assert event.source == f"api_key:{alice.api_key.id}"
