"""The OpenAPI document is as strict as the server, and no stricter: what it calls valid is
accepted, what it calls invalid is refused. The CI fuzz run (`.ci/run`) relies on both."""

import re
from datetime import timedelta
from typing import Any
from zoneinfo import available_timezones

import jsonschema
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from gtm_api.management.commands.seed_demo import DEMO_ROUTING
from gtm_api.services.routing import routing_config_install
from neuronx.schema import BLANK_TEXT_PATTERN, TEXT_PATTERN
from tests.conftest import lead_body, problem
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(anonymous) -> dict[str, Any]:
    response = anonymous.client.get("/v1/schema", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _component(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A component as plain JSON Schema: references resolvable, OpenAPI's `nullable` spelled out."""

    def plain(node: Any) -> Any:
        if isinstance(node, list):
            return [plain(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: plain(value) for key, value in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node

    components = plain(schema["components"]["schemas"])
    return {**components[name], "components": {"schemas": components}}


def _valid(schema: dict[str, Any], component: str, value: Any) -> bool:
    return jsonschema.Draft7Validator(_component(schema, component)).is_valid(value)


def _request_components(schema: dict[str, Any]):
    for name, component in schema["components"]["schemas"].items():
        if name.endswith("Request") and "properties" in component:
            yield name, component


# -- text fields -------------------------------------------------------------------------------


def test_every_free_text_field_of_a_request_states_what_the_server_refuses(schema):
    checked = 0
    for name, component in _request_components(schema):
        for field, prop in component["properties"].items():
            if prop.get("type") == "string" and not {"enum", "format"} & set(prop):
                assert prop.get("pattern"), f"{name}.{field} has no pattern"
                checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("Ada", True),
        ("  Ada ", True),
        ("", False),
        ("   ", False),
        ("\t\n", False),
        ("A\x00", False),
    ],
)
def test_the_text_pattern_is_the_servers_blank_and_nul_rule(alice, value, valid):
    assert bool(re.fullmatch(TEXT_PATTERN.replace("\\u0000", "\\x00"), value)) is valid
    response = alice.post("/v1/leads", lead_body(first_name=value))
    if valid:
        assert response.status_code == 201, response.content
        assert response.json()["first_name"] == value.strip()
    else:
        body = problem(response, 422, "validation_error")
        assert [error["field"] for error in body["errors"]] == ["first_name"]


def test_a_field_that_may_be_blank_refuses_only_nul(schema, alice):
    notes = schema["components"]["schemas"]["PaymentCreateInputRequest"]["properties"]
    assert notes["description"]["pattern"] == BLANK_TEXT_PATTERN
    lead = LeadFactory(tenant=alice.tenant, stage="routed")
    ConsentRecordFactory(lead=lead, scope="payment.processing")
    payment = {"lead_id": lead.id, "amount": 100, "currency": "EUR"}
    assert alice.post("/v1/payments", {**payment, "description": "  "}).status_code == 201
    body = problem(
        alice.post("/v1/payments", {**payment, "description": "a\x00"}), 422, "validation_error"
    )
    assert body["errors"][0]["field"] == "description"


# -- JSON types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/leads", lead_body(external_id=48151), "external_id"),
        (
            "/v1/leads",
            lead_body(
                consents=[
                    {
                        "scope": "data.profiling",
                        "granted": "yes",
                        "captured_at": "2026-01-01T00:00:00Z",
                        "source": "web_form",
                    }
                ]
            ),
            "consents[0].granted",
        ),
        ("/v1/payments", {"lead_id": "lead_x", "amount": "4990", "currency": "EUR"}, "amount"),
        ("/v1/payments", {"lead_id": "lead_x", "amount": True, "currency": "EUR"}, "amount"),
        (
            "/v1/webhook-subscriptions",
            {"url": "https://example.com/hook", "event_types": ["*"], "description": 5},
            "description",
        ),
        ("/v1/lead-imports", {"leads": [{}], "dry_run": "true"}, "dry_run"),
    ],
)
def test_a_json_body_is_typed_no_value_is_coerced(alice, path, body, field):
    response = alice.post(path, body)
    errors = problem(response, 422, "validation_error")["errors"]
    assert {"field": field, "code": "invalid"}.items() <= next(
        error for error in errors if error["field"] == field
    ).items(), errors


def test_form_fields_are_text_and_still_read_as_booleans(alice, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    upload = SimpleUploadedFile("leads.csv", b"email,first_name,last_name,source\n", "text/csv")
    response = alice.client.post(
        "/v1/lead-imports",
        {"file": upload, "dry_run": "true"},
        headers={"Authorization": f"Bearer {alice.key}", "Idempotency-Key": "form-1"},
    )
    assert response.status_code == 202, response.content
    assert response.json()["dry_run"] is True


# -- whole bodies ------------------------------------------------------------------------------


def test_request_objects_are_closed_as_the_server_refuses_unknown_fields(schema, alice):
    for name, component in _request_components(schema):
        assert component.get("additionalProperties") is False, name
    problem(alice.post("/v1/leads", lead_body(nickname="Ada")), 422, "validation_error")


def test_a_lead_needs_an_email_or_a_phone_in_the_schema_too(schema, alice):
    nameless = lead_body(email=..., phone=..., country="GB")
    assert not _valid(schema, "LeadCreateInputRequest", nameless)
    assert not _valid(schema, "LeadCreateInputRequest", {**nameless, "email": None})
    assert _valid(schema, "LeadCreateInputRequest", {**nameless, "phone": "+442079460958"})
    body = problem(alice.post("/v1/leads", nameless), 422, "validation_error")
    assert body["errors"][0]["code"] == "email_or_phone_required"


def test_an_update_cannot_clear_both_email_and_phone(schema, alice):
    cleared = {"email": None, "phone": None}
    assert not _valid(schema, "PatchedLeadUpdateInputRequest", cleared)
    assert _valid(schema, "PatchedLeadUpdateInputRequest", {"email": None})
    lead = LeadFactory(tenant=alice.tenant)
    problem(alice.patch(f"/v1/leads/{lead.id}", cleared), 422, "validation_error")


def test_an_appointment_update_is_a_reschedule_or_an_outcome_not_both(schema, alice):
    start = timezone.now() + timedelta(days=1)
    both = {"status": "canceled", "starts_at": start.isoformat()}
    assert not _valid(schema, "PatchedAppointmentUpdateInputRequest", both)
    assert not _valid(schema, "PatchedAppointmentUpdateInputRequest", {})
    assert _valid(schema, "PatchedAppointmentUpdateInputRequest", {"status": "canceled"})
    assert _valid(
        schema, "PatchedAppointmentUpdateInputRequest", {"status": "canceled", "notes": "Ill"}
    )
    lead = LeadFactory(tenant=alice.tenant, stage="routed")
    ConsentRecordFactory(lead=lead, scope="contact.email")
    created = alice.post(
        "/v1/appointments",
        {
            "lead_id": lead.id,
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=30)).isoformat(),
            "timezone": "Europe/Berlin",
            "channel": "video",
        },
    )
    assert created.status_code == 201, created.content
    path = f"/v1/appointments/{created.json()['id']}"
    problem(alice.patch(path, both), 422, "validation_error")
    problem(alice.patch(path, {}), 422, "validation_error")


def test_bodies_that_must_name_a_field_are_required(schema):
    paths = schema["paths"]
    for path, method in [
        ("/v1/leads/{id}/consents", "post"),
        ("/v1/lead-imports", "post"),
        ("/v1/appointments/{id}", "patch"),
        ("/v1/leads", "post"),
    ]:
        assert paths[path][method]["requestBody"]["required"] is True, (method, path)
    assert not paths["/v1/leads/{id}/qualify"]["post"]["requestBody"].get("required")


def test_event_types_cannot_be_an_empty_list(schema, alice):
    event_types = schema["components"]["schemas"]["WebhookSubscriptionCreateInputRequest"]
    assert event_types["properties"]["event_types"]["minItems"] == 1
    body = {"url": "https://example.com/hook", "event_types": []}
    problem(alice.post("/v1/webhook-subscriptions", body), 422, "validation_error")


def test_an_inline_import_takes_any_lead_value_as_a_row(schema, alice, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    assert _valid(schema, "LeadImportInlineInputRequest", {"leads": [None, "x", {}]})
    response = alice.post("/v1/lead-imports", {"leads": [None]})
    assert response.status_code == 202, response.content


def test_time_zones_the_server_accepts_match_the_pattern(schema, alice):
    pattern = schema["components"]["schemas"]["AppointmentCreateInputRequest"]["properties"][
        "timezone"
    ]["pattern"]
    assert all(re.fullmatch(pattern, zone) for zone in available_timezones() - {"localtime"})
    lead = LeadFactory(tenant=alice.tenant, stage="routed")
    ConsentRecordFactory(lead=lead, scope="contact.email")
    start = timezone.now() + timedelta(days=1)
    body = {
        "lead_id": lead.id,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
        "timezone": "localtime",  # a file of the server's zone database, not a zone
        "channel": "video",
    }
    body_problem = problem(alice.post("/v1/appointments", body), 422, "validation_error")
    assert body_problem["errors"][0]["code"] == "invalid_timezone"


# -- links -------------------------------------------------------------------------------------


def _links(schema: dict[str, Any]):
    by_id = {
        op["operationId"]: (path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for status, response in op["responses"].items():
                for name, link in response.get("links", {}).items():
                    yield (op["operationId"], status, name), link, by_id[link["operationId"]]


def test_every_link_fills_every_path_parameter_of_its_target(schema):
    seen = set()
    for source, link, (target_path, _) in _links(schema):
        needed = set(re.findall(r"\{(\w+)\}", target_path))
        assert needed == set(link.get("parameters", {})), (source, link)
        seen.add((source[0], link["operationId"]))
    assert {
        ("leads_create", "leads_qualify"),
        ("leads_qualify", "leads_route"),
        ("leads_route", "appointments_create"),
        ("leads_route", "payments_create"),
        ("appointments_create", "payments_create"),
        ("appointments_create", "appointments_update"),
        ("payments_create", "payments_cancel"),
        ("lead_imports_create", "lead_imports_errors_list"),
        ("webhook_subscriptions_create", "webhook_subscriptions_test"),
        ("webhook_subscriptions_test", "webhook_subscriptions_deliveries_retrieve"),
        ("webhook_subscriptions_test", "webhook_subscriptions_deliveries_redeliver"),
    } <= seen


def test_a_lead_routed_by_the_api_can_be_booked_through_the_link(schema, alice):
    link = schema["paths"]["/v1/leads/{id}/route"]["post"]["responses"]["200"]["links"]
    assert link["appointments_create"]["requestBody"] == {"lead_id": "$response.body#/lead_id"}
    routing_config_install(tenant=alice.tenant, config=DEMO_ROUTING)
    lead = LeadFactory(tenant=alice.tenant, stage="qualified")
    routed = alice.post(f"/v1/leads/{lead.id}/route", {})
    assert routed.status_code == 200, routed.content
    ConsentRecordFactory(lead=lead, scope="payment.processing")
    payment = {"lead_id": routed.json()["lead_id"], "amount": 100, "currency": "EUR"}
    assert alice.post("/v1/payments", payment).status_code == 201
