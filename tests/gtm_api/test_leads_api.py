from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gtm_api.models import Lead, Stage
from tests.conftest import lead_body, make_api, problem
from tests.factories import LeadFactory
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def test_create_normalises_and_returns_the_lead(alice):
    response = alice.post("/v1/leads", lead_body())
    assert response.status_code == 201, response.content
    lead = response.json()
    assert lead["id"].startswith("lead_")
    assert response["Location"] == f"/v1/leads/{lead['id']}"
    assert lead["email"] == "ada.lovelace@analytical-engines.com"
    assert lead["phone"] == "+442079460958"
    assert lead["country"] == "GB"
    assert lead["stage"] == "new"
    assert lead["score"] is None and lead["owner"] is None
    assert lead["attributes"] == {"utm_campaign": "spring", "employees": 120}
    assert lead["created_at"].endswith("Z")
    assert Lead.objects.get(pk=lead["id"]).tenant == alice.tenant


def test_create_writes_usage_and_event_in_the_same_transaction(alice):
    lead = alice.post("/v1/leads", lead_body()).json()
    usage = UsageEvent.objects.get(tenant=alice.tenant)
    assert (usage.dimension, usage.quantity, usage.api_key_id) == (
        "lead.ingested",
        1,
        alice.api_key.id,
    )
    event = Event.objects.get(tenant=alice.tenant)
    assert event.type == "lead.created" and event.data["lead"]["id"] == lead["id"]
    assert usage.request_id == event.request_id != ""


def test_national_phone_is_read_with_the_country(alice):
    response = alice.post("/v1/leads", lead_body(phone="030 901820", country="DE", email=...))
    assert response.status_code == 201, response.content
    assert response.json()["phone"] == "+4930901820"


def test_phone_only_lead_is_accepted(alice):
    response = alice.post("/v1/leads", lead_body(email=None))
    assert response.status_code == 201
    assert response.json()["email"] is None


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"email": "not-an-email"}, "email", "invalid_email"),
        ({"phone": "12345"}, "phone", "invalid_phone"),
        ({"country": "XX"}, "country", "invalid_country"),
        ({"first_name": ...}, "first_name", "required"),
        ({"source": ...}, "source", "required"),
        ({"email": None, "phone": None}, "email", "email_or_phone_required"),
        ({"attributes": {"nested": {"a": 1}}}, "attributes", "nested_attribute"),
        ({"attributes": {f"k{i}": i for i in range(51)}}, "attributes", "too_many_attributes"),
        ({"attributes": ["a"]}, "attributes", "invalid_attributes"),
        ({"first_name": "x" * 101}, "first_name", "max_length"),
        ({"stage": "verified_paid"}, "stage", "unknown_field"),
        ({"score": 99}, "score", "unknown_field"),
        ({"owner": "rep_1"}, "owner", "unknown_field"),
        ({"tenant_id": "ten_x"}, "tenant_id", "unknown_field"),
        ({"id": "lead_x"}, "id", "unknown_field"),
        ({"favourite_colour": "red"}, "favourite_colour", "unknown_field"),
        (
            {
                "consents": [
                    {
                        "scope": "telepathy",
                        "granted": True,
                        "captured_at": "2026-01-01T00:00:00Z",
                        "source": "x",
                    }
                ]
            },
            "consents[0].scope",
            "invalid_choice",
        ),
    ],
)
def test_bad_input_is_a_precise_422_and_writes_nothing(alice, overrides, field, code):
    body = problem(alice.post("/v1/leads", lead_body(**overrides)), 422, "validation_error")
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ], body["errors"]
    assert not Lead.objects.exists()
    assert not UsageEvent.objects.exists()


def test_malformed_json_is_400(alice):
    problem(alice.post("/v1/leads", raw=b'{"email": '), 400, "malformed_request")


def test_non_object_body_is_400(alice):
    problem(alice.post("/v1/leads", [lead_body()]), 400, "malformed_request")


def test_wrong_media_type_is_415(alice):
    problem(
        alice.post(
            "/v1/leads", raw="email=a@b.co", content_type="application/x-www-form-urlencoded"
        ),
        415,
        "unsupported_media_type",
    )


def test_body_without_content_type_is_415(alice):
    problem(
        alice.post("/v1/leads", raw=b'{"a": 1}', content_type=""), 415, "unsupported_media_type"
    )


def test_oversized_body_is_413(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    problem(alice.post("/v1/leads", lead_body(company="x" * 2000)), 413, "payload_too_large")
    assert not Lead.objects.exists()


@pytest.mark.parametrize("field", ["email", "external_id"])
def test_duplicate_is_409_with_existing_id(alice, field):
    first = alice.post("/v1/leads", lead_body(external_id="crm-1")).json()
    other = {"email": "someone.else@acme-corp.com", "external_id": "crm-2"}
    other[field] = "crm-1" if field == "external_id" else lead_body()["email"]
    body = problem(alice.post("/v1/leads", lead_body(**other)), 409, "lead_exists")
    assert body["existing_id"] == first["id"]
    assert Lead.objects.count() == 1


def test_duplicate_email_is_case_insensitive(alice):
    alice.post("/v1/leads", lead_body(email="ada@acme-corp.com"))
    problem(alice.post("/v1/leads", lead_body(email="ADA@Acme-Corp.com")), 409, "lead_exists")


def test_same_email_in_two_tenants_is_two_leads(alice, bob):
    assert alice.post("/v1/leads", lead_body()).status_code == 201
    assert bob.post("/v1/leads", lead_body()).status_code == 201


def test_missing_scope_is_403_naming_it(db):
    reader = make_api("alice", scopes=["leads:read"])
    body = problem(reader.post("/v1/leads", lead_body()), 403, "permission_denied")
    assert body["required_scope"] == "leads:write"


def test_retrieve_and_cross_tenant_404(alice, charlie):
    lead = alice.post("/v1/leads", lead_body()).json()
    assert alice.get(f"/v1/leads/{lead['id']}").json() == lead
    problem(charlie.get(f"/v1/leads/{lead['id']}"), 404, "not_found")
    problem(alice.get("/v1/leads/lead_DOESNOTEXIST"), 404, "not_found")


def test_list_is_tenant_scoped_paginated_and_filtered(alice, bob):
    mine = [LeadFactory(tenant=alice.tenant) for _ in range(5)]
    LeadFactory(tenant=bob.tenant)
    page = alice.get("/v1/leads", {"limit": 2}).json()
    assert set(page) == {"results", "next", "previous"}
    seen = [lead["id"] for lead in page["results"]]
    while page["next"]:
        page = alice.get(page["next"]).json()
        seen += [lead["id"] for lead in page["results"]]
    assert seen == sorted((lead.id for lead in mine), reverse=True)
    only = alice.get("/v1/leads", {"email": mine[0].email.upper()}).json()["results"]
    assert [lead["id"] for lead in only] == [mine[0].id]


def test_list_filters_by_stage_and_time(alice):
    old = LeadFactory(tenant=alice.tenant, stage=Stage.QUALIFIED)
    Lead.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    new = LeadFactory(tenant=alice.tenant)
    qualified = alice.get("/v1/leads", {"stage": "qualified"}).json()["results"]
    assert [lead["id"] for lead in qualified] == [old.id]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = alice.get("/v1/leads", {"created_after": since}).json()["results"]
    assert [lead["id"] for lead in recent] == [new.id]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 201}, 422, "validation_error"),
        ({"limit": "ten"}, 422, "validation_error"),
        ({"stage": "won"}, 422, "validation_error"),
        ({"created_after": "yesterday"}, 422, "validation_error"),
        ({"colour": "red"}, 422, "validation_error"),
        ({"cursor": "garbage"}, 400, "malformed_request"),
    ],
)
def test_list_bad_query_is_a_problem(alice, params, status, code):
    problem(alice.get("/v1/leads", params), status, code)


def test_list_query_count_does_not_grow_with_rows(alice):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert alice.get("/v1/leads", {"limit": 200}).status_code == 200
        return len(ctx)

    LeadFactory(tenant=alice.tenant)
    count()  # the first request also looks the API key up (then cached)
    few = count()
    for _ in range(30):
        LeadFactory(tenant=alice.tenant)
    # New rows on the page: on PostgreSQL, read once more as JSON text after their versions.
    assert count() <= few + 1 <= 3
    assert count() == few


def test_patch_updates_contact_fields_and_emits_event(alice):
    lead = alice.post("/v1/leads", lead_body()).json()
    response = alice.patch(
        f"/v1/leads/{lead['id']}", {"job_title": "CTO", "phone": "030 901820", "country": "DE"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["job_title"] == "CTO"
    assert response.json()["phone"] == "+4930901820"
    event = Event.objects.get(type="lead.updated")
    assert event.data["changed_fields"] == ["phone", "job_title", "country"]
    assert UsageEvent.objects.count() == 1  # updates are not metered


@pytest.mark.parametrize("field", ["stage", "score", "owner", "id", "created_at", "consents"])
def test_patch_rejects_read_only_fields(alice, field):
    lead = alice.post("/v1/leads", lead_body()).json()
    body = problem(alice.patch(f"/v1/leads/{lead['id']}", {field: "x"}), 422, "validation_error")
    assert body["errors"][0]["field"] == field
    assert Lead.objects.get().stage == "new"


def test_patch_cannot_remove_the_last_contact_channel(alice):
    lead = alice.post("/v1/leads", lead_body(phone=None)).json()
    problem(alice.patch(f"/v1/leads/{lead['id']}", {"email": None}), 422, "validation_error")
    assert Lead.objects.get().email == "ada.lovelace@analytical-engines.com"


def test_patch_to_a_taken_email_is_409(alice):
    first = alice.post("/v1/leads", lead_body(email="one@acme-corp.com")).json()
    second = alice.post("/v1/leads", lead_body(email="two@acme-corp.com")).json()
    body = problem(
        alice.patch(f"/v1/leads/{second['id']}", {"email": "ONE@acme-corp.com"}), 409, "lead_exists"
    )
    assert body["existing_id"] == first["id"]


def test_patch_cross_tenant_is_404_and_changes_nothing(alice, charlie):
    lead = alice.post("/v1/leads", lead_body()).json()
    problem(charlie.patch(f"/v1/leads/{lead['id']}", {"first_name": "Eve"}), 404, "not_found")
    assert Lead.objects.get().first_name == "Ada"


def test_patch_on_a_closed_lead_is_409_lead_closed(alice):
    lead = LeadFactory(tenant=alice.tenant, stage=Stage.VERIFIED_PAID)
    problem(alice.patch(f"/v1/leads/{lead.id}", {"first_name": "Eve"}), 409, "lead_closed")


def test_consents_in_the_create_body_are_recorded(alice):
    now = timezone.now().isoformat()
    lead = alice.post(
        "/v1/leads",
        lead_body(
            consents=[
                {
                    "scope": "data.profiling",
                    "granted": True,
                    "captured_at": now,
                    "source": "web_form",
                },
            ]
        ),
    ).json()
    ledger = alice.get(f"/v1/leads/{lead['id']}/consents").json()
    assert ledger["current"]["data.profiling"]["state"] == "granted"
    assert ledger["current"]["contact.sms"]["state"] == "not_captured"
    assert len(ledger["history"]) == 1


def test_nul_characters_are_422_not_a_database_error(alice):
    body = problem(
        alice.post("/v1/leads", lead_body(attributes={"note": "a\x00b"})), 422, "validation_error"
    )
    assert body["errors"][0]["code"] == "null_character"
    problem(alice.post("/v1/leads", lead_body(company="a\x00b")), 422, "validation_error")
    problem(alice.get("/v1/leads", {"external_id": "a\x00b"}), 422, "validation_error")
    problem(alice.get("/v1/leads/lead_%00x"), 404, "not_found")


def test_timestamps_are_rfc3339_even_for_early_years(alice):
    lead = alice.post("/v1/leads", lead_body()).json()
    body = {
        "scope": "contact.email",
        "granted": False,
        "captured_at": "0265-07-25T02:28:23Z",
        "source": "import",
    }
    ledger = alice.post(f"/v1/leads/{lead['id']}/consents", body).json()
    assert ledger["history"][0]["captured_at"] == "0265-07-25T02:28:23Z"
