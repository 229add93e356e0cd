"""A large file is validated in parts, each read from the offset the counting pass found, by
several child processes; the outcome is the one of validating the file in order in-process."""

import gc
import io
import json
import os
import threading
from dataclasses import astuple
from pathlib import Path

import pytest

from gtm_api.models import Lead
from gtm_api.services import imports_validation
from gtm_api.services.imports_reader import records_index, records_read
from gtm_api.services.imports_validation import file_validated
from gtm_api.services.imports_writer import ValidRow, attributes_json
from tests.gtm_api.importing import job, row_errors, upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

CSV = (
    b"\xef\xbb\xbfexternal_id,email,phone,first_name,last_name,company,country,source\n"
    b"crm-1,ada@acme-corp.com,+442079460958,Ada,Lovelace,,GB,csv\n"
    b"\n"
    b"crm-2,not-an-email,,Bad,Email,,,csv\n"
    b"crm-3,grace@acme-corp.com,030 901820,Grace,Hopper,,DE,csv\n"
    b'crm-4,multi@acme-corp.com,,"Multi\n\nLine",Quote,"Comma, Inc",,csv\n'
    b"\n\n"
    b"crm-5,ADA@acme-corp.com,,Dup,Email,,,csv\n"
    b"crm-6,ragged@acme-corp.com,,Rag\n"
    b"crm-7,latin@acme-corp.com,,Jos\xe9,M\xfcller,,,csv\n"
    b"crm-3,other@acme-corp.com,,Dup,Id,,,csv\n"
    b"crm-9,nine@acme-corp.com,+1 (646) 320-8117,Nine,Rows,,US,csv\n"
)
NDJSON = (
    b"\xef\xbb\xbf"
    + b"\n".join(
        [
            json.dumps({"external_id": "n-1", "email": "a@acme-corp.com", **{"x": 1}}).encode(),
            b"",
            json.dumps(
                {"email": "b@acme-corp.com", "first_name": "B", "last_name": "B", "source": "j"}
            ).encode(),
            b"not json",
            b"   ",
            json.dumps(
                {"email": "B@acme-corp.com", "first_name": "C", "last_name": "C", "source": "j"}
            ).encode(),
            b'{"email": "\xff@acme-corp.com"}',
            json.dumps(
                {
                    "email": "d@acme-corp.com",
                    "first_name": "D",
                    "last_name": "D",
                    "source": "j",
                    "attributes": {"tier": "gold", "seats": 12},
                }
            ).encode(),
        ]
    )
    + b"\n"
)


@pytest.fixture
def single_threaded() -> None:
    """The file is only validated by children in a process without other threads (forking one
    with threads is unsafe): wait for those an earlier test left (a slow HTTP handler)."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(timeout=10)
    assert threading.active_count() == 1


def records(content: bytes, fmt: str) -> list[tuple[int, dict, list]]:
    found = records_read(io.BytesIO(content), fmt=fmt)
    return [(r.number, r.data, r.errors) for r in found]


@pytest.mark.parametrize("content, fmt", [(CSV, "csv"), (NDJSON, "ndjson")])
@pytest.mark.parametrize("span", [1, 2, 3, 100])
def test_each_part_read_from_its_offset_gives_the_records_of_the_whole_file(content, fmt, span):
    whole = records(content, fmt)
    index = records_index(io.BytesIO(content), fmt=fmt, limit=1000, span=span)
    assert index.rows == len(whole)
    assert len(index.starts) == -(-len(whole) // span)
    parts = []
    stream = io.BytesIO(content)
    for part, offset in enumerate(index.starts):
        found = records_read(stream, fmt=fmt, offset=offset, first_row=part * span + 1)
        parts += [(r.number, r.data, r.errors) for r in found][:span]
    assert parts == whole


def outcomes(content: bytes, fmt: str, span: int) -> list[tuple[int, object]]:
    index = records_index(io.BytesIO(content), fmt=fmt, limit=1000, span=span)
    found: list[tuple[int, object]] = []
    for part in file_validated(lambda: io.BytesIO(content), fmt=fmt, index=index):
        found += [
            (number, tuple(o) if isinstance(o, ValidRow) else [astuple(e) for e in o])
            for number, o in part
        ]
    return found


@pytest.mark.parametrize("content, fmt", [(CSV, "csv"), (NDJSON, "ndjson")])
@pytest.mark.parametrize("span", [1, 2, 4])
def test_children_validating_parts_give_the_in_process_outcome(
    content, fmt, span, settings, tmp_path, monkeypatch, single_threaded
):
    settings.LEAD_IMPORT_PARALLEL_MIN_ROWS = 10**9
    in_process = outcomes(content, fmt, span)
    assert any(isinstance(o, tuple) for _, o in in_process)  # valid rows…
    assert any(isinstance(o, list) for _, o in in_process)  # …and failed ones

    # Each validation notes the process it ran in (the children write, the test reads).
    seen = tmp_path / "pids"
    real = imports_validation.lead_row_validate

    def noting(data, **kwargs):
        with Path(seen).open("a") as out:
            out.write(f"{os.getpid()}\n")
        return real(data, **kwargs)

    monkeypatch.setattr(imports_validation, "lead_row_validate", noting)
    settings.LEAD_IMPORT_PARALLEL_MIN_ROWS = 1
    assert outcomes(content, fmt, span) == in_process
    pids = set(seen.read_text().split())
    parts = len(records_index(io.BytesIO(content), fmt=fmt, limit=1000, span=span).starts)
    assert str(os.getpid()) not in pids
    assert len(pids) == min(imports_validation._cpus(), parts)


def test_an_import_validated_by_children_in_small_parts(
    alice, run_tasks, settings, single_threaded
):
    settings.LEAD_IMPORT_PARALLEL_MIN_ROWS = 1
    settings.LEAD_IMPORT_CHUNK_ROWS = 2
    with run_tasks():
        response = upload(alice, CSV)
    done = job(alice, response)
    assert done["counts"] == {"received": 9, "created": 4, "updated": 0, "failed": 5}
    assert row_errors(alice, done["id"]) == [
        (2, "email", "invalid_email"),
        (5, "email", "duplicate_in_file"),
        (6, None, "ragged_row"),
        (7, "first_name", "invalid_encoding"),
        (7, "last_name", "invalid_encoding"),
        (8, "external_id", "duplicate_in_file"),
    ]
    assert sorted(Lead.objects.values_list("external_id", "phone")) == [
        ("crm-1", "+442079460958"),
        ("crm-3", "+4930901820"),
        ("crm-4", None),
        ("crm-9", "+16463208117"),
    ]
    assert gc.isenabled()  # paused while the chunks were written, and back on


def test_a_child_that_dies_among_several_fails_the_job_cleanly(
    alice, run_tasks, settings, monkeypatch, single_threaded
):
    settings.LEAD_IMPORT_PARALLEL_MIN_ROWS = 1
    settings.LEAD_IMPORT_CHUNK_ROWS = 2
    real = imports_validation.lead_row_validate
    test_process = os.getpid()

    def dies_on_row_seven(data, **kwargs):
        if data.get("external_id") == "crm-7" and os.getpid() != test_process:
            os._exit(1)  # a forked child dies
        return real(data, **kwargs)

    monkeypatch.setattr(imports_validation, "lead_row_validate", dies_on_row_seven)
    with run_tasks():
        response = upload(alice, CSV)
    done = job(alice, response)
    assert (done["status"], done["error"]["code"]) == ("failed", "internal_error")
    # The chunks of rows 1–6, validated before that child died, were committed; no more.
    counts = done["counts"]
    assert (counts["created"], counts["failed"]) == (3, 3)
    assert gc.isenabled()


@pytest.mark.parametrize(
    "attributes",
    [
        {"utm_source": "google", "employees": "120"},
        {"quote": 'say "hi"', "slash": "a\\b", "line": "a\nb", "tab": "\t", "nul": "\x00"},
        {"ünïcode": "café ✓", "emoji": "🚀", "": ""},
        {"n": 1, "f": 1.5, "b": True, "z": None, "s": "text"},
    ],
)
def test_attributes_are_encoded_as_json_dumps_encodes_them(attributes):
    assert attributes_json(attributes) == json.dumps(attributes)


def test_an_upsert_leaves_alone_a_lead_closed_after_the_chunk_was_planned(alice):
    """Between the lookup that planned the chunk and its update, a lead was handed off."""
    from django.utils import timezone

    from gtm_api.models import Stage
    from gtm_api.services import imports_writer
    from neuronx.context import Actor
    from tests.factories import LeadFactory

    open_lead = LeadFactory(tenant=alice.tenant, email="open@acme-corp.com", first_name="Old")
    closing = LeadFactory(tenant=alice.tenant, email="closing@acme-corp.com", first_name="Old")
    rows = [
        ValidRow(
            (
                1,
                imports_writer.lead_columns({"email": "open@acme-corp.com", "first_name": "New"}),
                [],
            )
        ),
        ValidRow(
            (
                2,
                imports_writer.lead_columns(
                    {"email": "closing@acme-corp.com", "first_name": "New"}
                ),
                [],
            )
        ),
    ]
    plan = imports_writer._plan(rows, imports_writer._stored(alice.tenant.pk, rows), upsert=True)
    assert [lead_id for lead_id, _, _ in plan.updates] == [open_lead.id, closing.id]
    Lead.objects.filter(pk=closing.pk).update(stage=Stage.VERIFIED_PAID)

    result = imports_writer.ChunkResult(updated=2)
    actor = Actor.system(alice.tenant, "test")
    imports_writer._apply(actor, plan, result, timezone.now())
    assert result.updated == 1
    assert [(row, error.code) for row, error in result.errors] == [(2, "lead_closed")]
    assert Lead.objects.get(pk=open_lead.pk).first_name == "New"
    assert Lead.objects.get(pk=closing.pk).first_name == "Old"


@pytest.mark.django_db(transaction=True)
def test_a_large_import_refreshes_the_statistics_of_the_leads_table(alice, monkeypatch):
    """So that the next import's lookups are planned for the table as it now is."""
    from django.db import connection

    from gtm_api.services import imports

    monkeypatch.setattr(imports, "ANALYZE_MIN_ROWS", 3)  # "large"
    response = upload(alice, CSV)  # autocommit: the eager task runs at once
    assert job(alice, response)["counts"]["created"] == 4
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'gtm_api_lead'")
            assert cursor.fetchone() == (4,)


def test_nan_and_infinity_are_not_json_in_a_row_either(alice, run_tasks):
    """As in a request body: such a row is an error, not a value the database cannot store."""
    ndjson = (
        b'{"email": "a@acme-corp.com", "first_name": "A", "last_name": "B", "source": "x", '
        b'"attributes": {"ratio": NaN}}\n'
        b'{"email": "b@acme-corp.com", "first_name": "B", "last_name": "B", "source": "x"}\n'
    )
    csv_content = (
        b"email,first_name,last_name,source,attributes\n"
        b'c@acme-corp.com,C,C,x,"{""ratio"": Infinity}"\n'
    )
    with run_tasks():
        from_ndjson = upload(alice, ndjson, name="l.ndjson", content_type="application/x-ndjson")
        from_csv = upload(alice, csv_content)
    done = job(alice, from_ndjson)
    assert (done["status"], done["counts"]["created"]) == ("completed_with_errors", 1)
    assert row_errors(alice, done["id"]) == [(1, None, "malformed_row")]
    done = job(alice, from_csv)
    assert row_errors(alice, done["id"]) == [(1, "attributes", "invalid_json")]
