"""POST /v1/lead-imports and the job's reads: formats, modes, dirty rows, limits, tenancy."""

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from consent.models import ConsentRecord
from gtm_api.models import Lead, LeadImport, Stage
from tests.conftest import make_api, problem
from tests.factories import LeadFactory
from tests.gtm_api.importing import (
    csv_bytes,
    failed_rows,
    job,
    row_errors,
    upload,
)
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def lead(email: str, **fields: str) -> dict[str, str]:
    return {"email": email, "first_name": "Ada", "last_name": "Lovelace", "source": "crm", **fields}


# -- formats ------------------------------------------------------------------------------------


def test_csv_upload_is_accepted_then_imported_with_the_single_create_rules(alice, run_tasks):
    content = csv_bytes(
        "crm-1, Ada.Lovelace@Analytical-Engines.com ,+44 20 7946 0958,Ada,Lovelace,AE Ltd,gb,csv",
        "crm-2,,030 901820,Grace,Hopper,,DE,csv",
    )
    with run_tasks():
        response = upload(alice, content)
    assert response.status_code == 202, response.content
    accepted = response.json()
    assert response["Location"] == f"/v1/lead-imports/{accepted['id']}"
    assert accepted["id"].startswith("imp_")
    assert accepted["status"] == "queued"  # the answer is written before the job runs
    assert (accepted["source"], accepted["format"], accepted["file_name"]) == (
        "upload",
        "csv",
        "leads.csv",
    )
    done = job(alice, response)
    assert done["status"] == "completed"
    assert done["counts"] == {"received": 2, "created": 2, "updated": 0, "failed": 0}
    assert done["progress"] == {"processed": 2, "total": 2, "percent": 100.0}
    assert done["error"] is None and done["finished_at"] is not None
    ada = Lead.objects.get(external_id="crm-1")
    assert (ada.email, ada.phone, ada.country, ada.stage) == (
        "ada.lovelace@analytical-engines.com",
        "+442079460958",
        "GB",
        Stage.NEW,
    )
    assert Lead.objects.get(external_id="crm-2").phone == "+4930901820"  # national, read with DE
    assert set(Lead.objects.values_list("tenant_id", flat=True)) == {alice.tenant.pk}


def test_one_usage_event_with_the_created_quantity_and_one_completed_event(alice, run_tasks):
    content = csv_bytes(
        "crm-1,a@acme-corp.com,,A,B,,,csv",
        "crm-2,b@acme-corp.com,,A,B,,,csv",
        "crm-3,not-an-email,,A,B,,,csv",
    )
    with run_tasks():
        response = upload(alice, content)
    usage = UsageEvent.objects.get(tenant=alice.tenant)
    assert (usage.dimension, usage.quantity, usage.api_key_id) == (
        "lead.ingested",
        2,
        alice.api_key.id,
    )
    assert usage.request_id == response["X-Request-ID"]
    event = Event.objects.get(tenant=alice.tenant)  # no lead.created per row
    assert event.type == "lead_import.completed"
    assert event.data["import"]["id"] == response.json()["id"]
    assert event.data["import"]["status"] == "completed_with_errors"
    assert event.data["import"]["counts"] == {
        "received": 3,
        "created": 2,
        "updated": 0,
        "failed": 1,
    }


def test_ndjson_upload_with_consents_per_row(alice, run_tasks):
    captured = timezone.now().isoformat()
    rows = [
        {
            **lead("ada@acme-corp.com", external_id="crm-1"),
            "attributes": {"employees": 120, "vip": True},
            "consents": [
                {
                    "scope": "contact.email",
                    "granted": True,
                    "captured_at": captured,
                    "source": "form",
                }
            ],
        },
        lead("grace@acme-corp.com"),
        {**lead("bad@acme-corp.com"), "consents": [{"scope": "telepathy"}]},
        "not an object",
    ]
    content = "\n".join(json.dumps(row) for row in rows).encode() + b"\n\n{oops\n"
    with run_tasks():
        response = upload(alice, content, name="leads.ndjson", content_type="application/x-ndjson")
    done = job(alice, response)
    assert done["format"] == "ndjson"
    assert done["counts"] == {"received": 5, "created": 2, "updated": 0, "failed": 3}
    ada = Lead.objects.get(external_id="crm-1")
    assert ada.attributes == {"employees": 120, "vip": True}
    assert list(ConsentRecord.objects.values_list("lead_id", "scope", "granted")) == [
        (ada.id, "contact.email", True)
    ]
    errors = row_errors(alice, done["id"])
    assert (3, "consents[0].scope", "invalid_choice") in errors
    assert (3, "consents[0].granted", "required") in errors
    assert (4, None, "malformed_row") in errors
    assert (5, None, "malformed_row") in errors  # the blank line is not a row


def test_inline_leads(alice, run_tasks):
    with run_tasks():
        response = alice.post(
            "/v1/lead-imports",
            {"leads": [lead("ada@acme-corp.com"), lead("grace@acme-corp.com", phone="12345")]},
        )
    done = job(alice, response)
    assert (done["source"], done["format"], done["file_name"]) == ("inline", "ndjson", None)
    assert done["counts"] == {"received": 2, "created": 1, "updated": 0, "failed": 1}
    assert row_errors(alice, done["id"]) == [(2, "phone", "invalid_phone")]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"leads": []}, "leads", "min_length"),
        ({"leads": [lead(f"l{i}@acme-corp.com") for i in range(1001)]}, "leads", "max_length"),
        ({"leads": "ada"}, "leads", "not_a_list"),
        ({"leads": [lead("a@acme-corp.com")], "mode": "merge"}, "mode", "invalid_choice"),
        ({"leads": [lead("a@acme-corp.com")], "colour": "red"}, "colour", "unknown_field"),
        ({}, "source_url", "required"),
        ({"source_url": "ftp://files.example.com/leads.csv"}, "source_url", "invalid"),
    ],
)
def test_bad_json_submissions_are_precise_422s(alice, body, field, code):
    errors = problem(alice.post("/v1/lead-imports", body), 422, "validation_error")["errors"]
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in errors
    ]
    assert not LeadImport.objects.exists()


def test_wrong_media_type_and_malformed_json(alice):
    problem(
        alice.post("/v1/lead-imports", raw=b"email\na@b.co", content_type="text/csv"),
        415,
        "unsupported_media_type",
    )
    problem(alice.post("/v1/lead-imports", raw=b'{"leads": ['), 400, "malformed_request")
    body = problem(
        upload(alice, csv_bytes("x,a@acme-corp.com,,A,B,,,c"), mode="merge"),
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "mode"


# -- modes --------------------------------------------------------------------------------------


def test_upsert_matches_external_id_then_email_and_keeps_what_the_row_leaves_empty(
    alice, run_tasks
):
    by_id = LeadFactory(
        tenant=alice.tenant,
        external_id="crm-1",
        email="old@acme-corp.com",
        company="Old Co",
        phone="+4930901820",
    )
    by_email = LeadFactory(tenant=alice.tenant, email="grace@acme-corp.com", external_id=None)
    closed = LeadFactory(tenant=alice.tenant, email="paid@acme-corp.com", stage=Stage.VERIFIED_PAID)
    other = LeadFactory(tenant=alice.tenant, email="taken@acme-corp.com")
    content = csv_bytes(
        "crm-1,new@acme-corp.com,,Ada,Byron,,GB,csv",  # matched by external_id: email changes
        "crm-2,Grace@acme-corp.com,,Grace,Hopper,Navy,,csv",  # matched by email, gets the id
        "crm-3,fresh@acme-corp.com,,New,Lead,,,csv",  # no match: created
        ",paid@acme-corp.com,,X,Y,,,csv",  # matches a handed-off lead
        "crm-4,taken@acme-corp.com,,X,Y,,,csv",  # new external_id, email of another lead
    )
    with run_tasks():
        response = upload(alice, content, mode="upsert")
    done = job(alice, response)
    assert done["mode"] == "upsert"
    assert done["counts"] == {"received": 5, "created": 1, "updated": 3, "failed": 1}
    by_id.refresh_from_db()
    assert (by_id.email, by_id.last_name, by_id.company, by_id.phone, by_id.country) == (
        "new@acme-corp.com",
        "Byron",
        "Old Co",  # empty cell: kept
        "+4930901820",
        "GB",
    )
    by_email.refresh_from_db()
    assert (by_email.external_id, by_email.company) == ("crm-2", "Navy")
    other.refresh_from_db()
    assert other.external_id == "crm-4"  # matched by email: the row's external_id is set
    assert Lead.objects.filter(tenant=alice.tenant).count() == 5
    assert row_errors(alice, done["id"]) == [(4, None, "lead_closed")]
    closed.refresh_from_db()
    assert closed.first_name == "Grace"
    assert UsageEvent.objects.get().quantity == 1  # only created leads are metered


def test_upsert_twice_updates_instead_of_duplicating(alice, run_tasks):
    content = csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv", "crm-2,b@acme-corp.com,,A,B,,,csv")
    with run_tasks():
        response = upload(alice, content, mode="upsert")
    first = job(alice, response)
    with run_tasks():
        response = upload(alice, content, mode="upsert")
    second = job(alice, response)
    assert first["counts"] == {"received": 2, "created": 2, "updated": 0, "failed": 0}
    assert second["counts"] == {"received": 2, "created": 0, "updated": 2, "failed": 0}
    assert Lead.objects.count() == 2
    # Nothing changed: matched and counted, but not rewritten.
    stamps = dict(Lead.objects.values_list("external_id", "updated_at"))
    with run_tasks():
        upload(
            alice,
            csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv", "crm-2,b@acme-corp.com,,A,Z,,,csv"),
            mode="upsert",
        )
    after = dict(Lead.objects.values_list("external_id", "updated_at"))
    assert after["crm-1"] == stamps["crm-1"]
    assert after["crm-2"] > stamps["crm-2"]
    assert Lead.objects.get(external_id="crm-2").last_name == "Z"


def test_create_mode_reports_existing_leads_as_row_errors(alice, run_tasks):
    existing = LeadFactory(tenant=alice.tenant, external_id="crm-9", email="ada@acme-corp.com")
    content = csv_bytes(
        "crm-1,ADA@acme-corp.com,,A,B,,,csv",
        "crm-9,other@acme-corp.com,,A,B,,,csv",
        "crm-2,grace@acme-corp.com,,A,B,,,csv",
    )
    with run_tasks():
        response = upload(alice, content)
    done = job(alice, response)
    assert done["counts"] == {"received": 3, "created": 1, "updated": 0, "failed": 2}
    errors = alice.get(f"/v1/lead-imports/{done['id']}/errors").json()["results"]
    assert [(e["row"], e["field"], e["code"]) for e in errors] == [
        (1, "email", "lead_exists"),
        (2, "external_id", "lead_exists"),
    ]
    assert existing.id in errors[0]["message"]


def test_dry_run_validates_and_matches_everything_and_writes_nothing(alice, run_tasks):
    LeadFactory(tenant=alice.tenant, email="ada@acme-corp.com")
    content = csv_bytes(
        "crm-1,ada@acme-corp.com,,A,B,,,csv",
        "crm-2,grace@acme-corp.com,,A,B,,,csv",
        "crm-3,bad,,A,B,,,csv",
    )
    with run_tasks():
        response = upload(alice, content, dry_run="true", mode="upsert")
    done = job(alice, response)
    assert done["dry_run"] is True
    assert done["counts"] == {"received": 3, "created": 1, "updated": 1, "failed": 1}
    assert row_errors(alice, done["id"]) == [(3, "email", "invalid_email")]
    assert Lead.objects.count() == 1 and Lead.objects.get().external_id is None
    assert not UsageEvent.objects.exists()
    assert Event.objects.get().type == "lead_import.completed"


# -- dirty rows ---------------------------------------------------------------------------------

DIRTY = (
    b"external_id,email,phone,first_name,last_name,company,country,source\n"
    b"crm-1,ada@acme-corp.com,+442079460958,Ada,Lovelace,,GB,csv\n"  # 1 ok
    b"crm-2,not-an-email,,Bad,Email,,,csv\n"  # 2 invalid_email
    b"crm-3,phone@acme-corp.com,12345,Bad,Phone,,,csv\n"  # 3 invalid_phone
    b"crm-4,ADA@acme-corp.com,,Dup,Email,,,csv\n"  # 4 duplicate of row 1
    b"crm-5,existing@acme-corp.com,,Dup,Existing,,,csv\n"  # 5 lead_exists
    b"crm-6,ragged@acme-corp.com,,Rag\n"  # 6 ragged_row
    b"crm-7,latin@acme-corp.com,,Jos\xe9,M\xfcller,,,csv\n"  # 7 Latin-1 bytes
    b"\n"  # blank: not a row
    b"crm-8,,,No,Contact,,,csv\n"  # 8 email_or_phone_required
    b'crm-9,quoted@acme-corp.com,,"Multi\nLine",Quote,"Comma, Inc",,csv\n'  # 9 ok
    b"crm-10,long@acme-corp.com,," + b"x" * 101 + b",L,,XX,csv\n"  # 10 two errors
)


def test_every_dirty_row_gets_a_precise_error_and_the_rest_is_imported(alice, run_tasks):
    LeadFactory(tenant=alice.tenant, email="existing@acme-corp.com")
    with run_tasks():
        response = upload(alice, DIRTY)
    done = job(alice, response)
    assert done["status"] == "completed_with_errors"
    assert done["counts"] == {"received": 10, "created": 2, "updated": 0, "failed": 8}
    assert row_errors(alice, done["id"]) == [
        (2, "email", "invalid_email"),
        (3, "phone", "invalid_phone"),
        (4, "email", "duplicate_in_file"),
        (5, "email", "lead_exists"),
        (6, None, "ragged_row"),
        (7, "first_name", "invalid_encoding"),
        (7, "last_name", "invalid_encoding"),
        (8, "email", "email_or_phone_required"),
        (10, "first_name", "max_length"),
        (10, "country", "invalid_country"),
    ]
    quoted = Lead.objects.get(external_id="crm-9")
    assert (quoted.first_name, quoted.company) == ("Multi\nLine", "Comma, Inc")


def test_failed_rows_csv_can_be_fixed_and_submitted_again(alice, run_tasks):
    LeadFactory(tenant=alice.tenant, email="existing@acme-corp.com")
    with run_tasks():
        response = upload(alice, DIRTY)
    first = job(alice, response)
    text = failed_rows(alice, first["id"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [*DIRTY.decode("latin-1").splitlines()[0].split(","), "error"]
    assert [row[0] for row in rows[1:]] == [f"crm-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10)]
    assert rows[1][-1] == "email (invalid_email): 'not-an-email' is not a valid email address."
    assert rows[5][-1].startswith("(ragged_row) The row has 4 values")
    assert rows[6][3] == "Jos\ufffd"  # undecodable bytes shown as replacement characters
    assert "first_name (max_length)" in rows[8][-1] and "country (invalid_country)" in rows[8][-1]
    # Fix the emails and phone, drop the rest, upload the file as it is (with its error column).
    fixed = [rows[0], [*rows[1][:1], "fixed@acme-corp.com", *rows[1][2:]], rows[2]]
    fixed[2][2] = "+4930901820"
    out = io.StringIO()
    csv.writer(out).writerows(fixed)
    with run_tasks():
        response = upload(alice, out.getvalue().encode())
    second = job(alice, response)
    assert second["counts"] == {"received": 2, "created": 2, "updated": 0, "failed": 0}


def test_failed_rows_of_an_ndjson_import_are_csv_too(alice, run_tasks):
    rows = [lead("ada@acme-corp.com"), {**lead("bad"), "attributes": {"a": 1}}]
    with run_tasks():
        response = alice.post("/v1/lead-imports", {"leads": rows})
    text = failed_rows(alice, response.json()["id"])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 1
    assert (parsed[0]["email"], parsed[0]["attributes"]) == ("bad", '{"a": 1}')
    assert parsed[0]["error"].startswith("email (invalid_email)")


# -- problems with the file as a whole ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"  \n\n", "empty_file"),
        (b"email,first_name,last_name,source,colour\n", "unknown_column"),
        (b"email,first_name,last_name,source,email\n", "duplicate_column"),
        (b"email,first_name,source\n", "missing_column"),
        ("email,first_name,last_name,source\n".encode("utf-16"), "unsupported_encoding"),
        (b"em\xe4il,first_name,last_name,source\n", "unsupported_encoding"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_at_upload(alice, content, code):
    body = problem(upload(alice, content), 422, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("file", code)]
    assert not LeadImport.objects.exists()


def test_unknown_column_names_the_columns_and_the_allowed_ones(alice):
    body = problem(
        upload(alice, b"email,first_name,last_name,source,colour,size\n"), 422, "validation_error"
    )
    assert "colour, size" in body["errors"][0]["message"]
    assert "attributes.<key>" in body["errors"][0]["message"]


def test_a_header_without_rows_fails_the_job(alice, run_tasks):
    with run_tasks():
        response = upload(alice, b"email,first_name,last_name,source\n")
    done = job(alice, response)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "empty_file"
    assert Event.objects.get().data["import"]["status"] == "failed"
    assert not UsageEvent.objects.exists()


def test_row_limit_fails_the_job_before_writing_anything(alice, run_tasks, settings):
    settings.LEAD_IMPORT_MAX_ROWS = 2
    content = csv_bytes(*(f"crm-{i},l{i}@acme-corp.com,,A,B,,,csv" for i in range(3)))
    with run_tasks():
        response = upload(alice, content)
    done = job(alice, response)
    assert (done["status"], done["error"]["code"]) == ("failed", "too_many_rows")
    assert done["counts"]["received"] == 0
    assert not Lead.objects.exists()


def test_file_size_limit_is_413(alice, settings):
    settings.LEAD_IMPORT_MAX_FILE_BYTES = 100
    content = csv_bytes(*(f"crm-{i},l{i}@acme-corp.com,,A,B,,,csv" for i in range(5)))
    problem(upload(alice, content), 413, "payload_too_large")
    assert not LeadImport.objects.exists()


def test_field_lengths_are_the_lead_limits(alice, run_tasks):
    content = csv_bytes(
        "x" * 256 + ",a@acme-corp.com,,A,B,,,csv",
        "crm-2,b@acme-corp.com,,A,B," + "c" * 201 + ",,csv",
    )
    with run_tasks():
        response = upload(alice, content)
    done = job(alice, response)
    assert row_errors(alice, done["id"]) == [
        (1, "external_id", "max_length"),
        (2, "company", "max_length"),
    ]


def test_attribute_columns_and_json_cells(alice, run_tasks):
    content = (
        b"email,first_name,last_name,source,attributes.utm_source,attributes,consents\n"
        b'a@acme-corp.com,A,B,csv,google,"{""employees"": 120}",\n'
        b"b@acme-corp.com,A,B,csv,,{not json},\n"
        b'c@acme-corp.com,A,B,csv,,,"[{""scope"": ""data.profiling"", ""granted"": true, '
        b'""captured_at"": ""2026-01-01T00:00:00Z"", ""source"": ""crm""}]"\n'
    )
    with run_tasks():
        response = upload(alice, content)
    done = job(alice, response)
    assert Lead.objects.get(email="a@acme-corp.com").attributes == {
        "employees": 120,
        "utm_source": "google",
    }
    assert row_errors(alice, done["id"]) == [(2, "attributes", "invalid_json")]
    assert ConsentRecord.objects.get().scope == "data.profiling"


# -- limits, idempotency, tenancy ---------------------------------------------------------------


def test_concurrent_imports_per_tenant_are_limited(alice, bob, settings):
    settings.LEAD_IMPORT_MAX_CONCURRENT = 1
    content = csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv")
    assert upload(alice, content).status_code == 202  # queued: its task has not run
    limited = upload(alice, content)
    body = problem(limited, 429, "too_many_imports")
    assert limited["Retry-After"] == "30"
    assert "limit is 1" in body["detail"]
    assert upload(bob, content).status_code == 202  # per tenant
    LeadImport.objects.filter(tenant=alice.tenant).update(status="completed")
    assert upload(alice, content).status_code == 202


def test_same_key_and_same_file_replays_a_different_file_is_422(alice):
    content = csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv")
    first = upload(alice, content, idempotency_key="import-1")
    replay = upload(alice, content, idempotency_key="import-1")
    assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json() and replay["Location"] == first["Location"]
    assert LeadImport.objects.count() == 1
    other = upload(
        alice, content + b"crm-2,b@acme-corp.com,,A,B,,,csv\n", idempotency_key="import-1"
    )
    problem(other, 422, "idempotency_key_reused")
    renamed = upload(alice, content, name="other.csv", idempotency_key="import-1")
    problem(renamed, 422, "idempotency_key_reused")


def test_reads_are_tenant_scoped_and_charlie_gets_404(alice, charlie, run_tasks):
    with run_tasks():
        response = upload(alice, csv_bytes("crm-1,bad,,A,B,,,csv"))
    job_id = response.json()["id"]
    for path in ("", "/errors", "/failed-rows"):
        problem(charlie.get(f"/v1/lead-imports/{job_id}{path}"), 404, "not_found")
        assert alice.get(f"/v1/lead-imports/{job_id}{path}").status_code == 200
    assert charlie.get("/v1/lead-imports").json()["results"] == []
    assert [j["id"] for j in alice.get("/v1/lead-imports").json()["results"]] == [job_id]
    problem(alice.get("/v1/lead-imports/imp_DOESNOTEXIST"), 404, "not_found")


def test_list_filters_by_status(alice, run_tasks):
    with run_tasks():
        done = upload(alice, csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv")).json()["id"]
    queued = upload(alice, csv_bytes("crm-2,b@acme-corp.com,,A,B,,,csv")).json()["id"]
    assert [
        j["id"] for j in alice.get("/v1/lead-imports", {"status": "queued"}).json()["results"]
    ] == [queued]
    assert [
        j["id"] for j in alice.get("/v1/lead-imports", {"status": "completed"}).json()["results"]
    ] == [done]
    problem(alice.get("/v1/lead-imports", {"status": "done"}), 422, "validation_error")


def test_scopes(db, run_tasks):
    writer = make_api("alice", scopes=["leads:write"])
    reader = make_api("alice", scopes=["leads:read"])
    body = problem(
        upload(reader, csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv")), 403, "permission_denied"
    )
    assert body["required_scope"] == "leads:write"
    response = upload(writer, csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv"))
    assert response.status_code == 202
    problem(writer.get(response["Location"]), 403, "permission_denied")
    assert reader.get(response["Location"]).status_code == 200


def test_errors_are_paginated_in_row_order(alice, run_tasks):
    content = csv_bytes(*(f"crm-{i},bad-{i},,A,B,,,csv" for i in range(1, 8)))
    with run_tasks():
        job_id = upload(alice, content).json()["id"]
    page = alice.get(f"/v1/lead-imports/{job_id}/errors", {"limit": 3}).json()
    assert [e["row"] for e in page["results"]] == [1, 2, 3]
    page = alice.get(page["next"]).json()
    assert [e["row"] for e in page["results"]] == [4, 5, 6]
    assert set(page["results"][0]) == {"row", "field", "code", "message"}
    problem(alice.get(f"/v1/lead-imports/{job_id}/errors", {"limit": 0}), 422, "validation_error")


def test_rate_class_is_bulk(alice, settings):
    response = upload(alice, csv_bytes("crm-1,a@acme-corp.com,,A,B,,,csv"))
    assert (
        response["RateLimit-Policy"]
        == f'"bulk";q={settings.RATE_LIMITS["bulk"].split("/")[0]};w=60'
    )
    assert alice.get(response["Location"])["RateLimit-Policy"].startswith('"read"')


def test_files_are_kept_in_the_storage_and_purged_after_retention(alice, run_tasks, media_root):
    from gtm_api.services.imports import lead_imports_purge

    with run_tasks():
        job_id = upload(alice, csv_bytes("crm-1,bad,,A,B,,,csv")).json()["id"]
    stored = LeadImport.objects.get(pk=job_id)
    assert (media_root / stored.file.name).exists()
    assert lead_imports_purge() == 0
    LeadImport.objects.filter(pk=job_id).update(
        finished_at=timezone.now() - timezone.timedelta(days=31)
    )
    assert lead_imports_purge() == 1
    assert not (media_root / stored.file.name).exists()
    problem(alice.get(f"/v1/lead-imports/{job_id}/failed-rows"), 404, "not_found")
    assert alice.get(f"/v1/lead-imports/{job_id}/errors").json()["results"]  # errors stay


# -- validation in a child process (large files in a worker) -------------------------------------


def test_rows_validated_in_a_child_process_give_the_same_outcome(alice, run_tasks, settings):
    settings.LEAD_IMPORT_PARALLEL_MIN_ROWS = 1  # any file is "large"
    LeadFactory(tenant=alice.tenant, email="existing@acme-corp.com")
    with run_tasks():
        response = upload(alice, DIRTY)
    done = job(alice, response)
    assert done["counts"] == {"received": 10, "created": 2, "updated": 0, "failed": 8}
    assert [row for row, _, _ in row_errors(alice, done["id"])] == [2, 3, 4, 5, 6, 7, 7, 8, 10, 10]


def test_a_broken_multipart_body_is_400(alice):
    response = alice.post(
        "/v1/lead-imports", raw=b"--x\r\nnot a part", content_type="multipart/form-data"
    )
    problem(response, 400, "malformed_request")
    two_files = alice.client.post(
        "/v1/lead-imports",
        {"file": [SimpleUploadedFile("a.csv", b"x"), SimpleUploadedFile("b.csv", b"y")]},
        headers={"Authorization": f"Bearer {alice.key}", "Idempotency-Key": "two-files"},
    )
    body = problem(two_files, 422, "validation_error")
    assert body["errors"][0]["field"] == "file"
    assert not LeadImport.objects.exists()
