"""On PostgreSQL the unfiltered lead list's pages are JSON text written by the database; the API
sends, byte for byte and with the same headers, what DRF renders with `LeadOutput` from the
leads' model instances: for every kind of value, forward and back, at every page size."""

from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from gtm_api.models import Lead, Stage
from gtm_api.selectors.leads import lead_list
from gtm_api.serializers import LeadOutput
from neuronx import json_rows as json_rows_module
from neuronx.json_rows import RowTexts, json_row, server_seen
from neuronx.models import Tenant
from neuronx.pagination import CursorPagination
from neuronx.renderers import JsonRenderer
from tests.conftest import problem
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

# The paths this database has: JSON text written by the database is PostgreSQL's.
PATHS = [False, True] if connection.vendor == "postgresql" else [False]
CONTROL = "tab\there, new\nline, \x01 and \x1f, \u2028 and \u2029, \x7f"
ATTRIBUTES = {
    "nested": {"list": [1, 2.5, {"deep": None}, []], "empty": {}},
    "tiny": 1e-07,
    "huge": 1.5e300,
    "tenth": 0.1,
    "negative": -2.5e-10,
    "big": 12345678901234567890,
    "ключ ünïcødé": "значение 😀",
    'quote "key"': "back\\slash",
    "control": CONTROL,
    "flag": True,
    "nothing": None,
}
# Whole seconds, trailing zeros and single microseconds: ISO 8601 renders each differently.
TIMES = [
    datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
    datetime(2026, 3, 1, 9, 30, 15, 120000, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 5, tzinfo=UTC),
    datetime(1999, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
]


@pytest.fixture
def leads(alice: Any, bob: Any) -> list[Lead]:
    made = [
        # Null in every nullable field (a lead needs an email or a phone).
        LeadFactory(tenant=alice.tenant, email=None, phone="+4930901820", attributes={}),
        LeadFactory(
            tenant=alice.tenant,
            external_id=None,
            email="ada@example.com",
            phone=None,
            company=None,
            job_title=None,
            country=None,
            score=None,
            owner=None,
            attributes={"only": "one"},
        ),
        LeadFactory(
            tenant=alice.tenant,
            external_id='crm "48151" \\ 62342',
            phone="+442079460958",
            first_name="Zoë 😀 𝄞",  # non-BMP characters
            last_name="שלום עולם",  # right to left
            company='Quote "Co" \\ Back\\slash',
            job_title=CONTROL,
            country="DE",
            source="web_form",
            stage=Stage.QUALIFIED,
            score=100,
            owner="ада.л",
            attributes=ATTRIBUTES,
        ),
        LeadFactory(tenant=alice.tenant, score=0, attributes={"employees": 120, "x": "\u2028"}),
    ]
    made += [LeadFactory(tenant=alice.tenant, attributes={"n": n}) for n in range(5)]
    LeadFactory(tenant=bob.tenant, first_name="Not Alice's")
    for n, lead in enumerate(made):
        Lead.objects.filter(pk=lead.pk).update(
            created_at=TIMES[n % len(TIMES)], updated_at=TIMES[(n + 1) % len(TIMES)]
        )
    return made


@pytest.fixture(params=PATHS, ids=lambda path: "json" if path else "rows")
def json_rows(request: Any, monkeypatch: Any) -> bool:
    """The API's list with its pages written by the database (or not), whatever the default."""
    monkeypatch.setattr("gtm_api.api.leads.lead_list", partial(lead_list, json_rows=request.param))
    return bool(request.param)


def _drf_page(tenant: Tenant, url: str, output: type = LeadOutput) -> bytes:
    """What DRF sends for `url`: its keyset pagination of the tenant's leads as model
    instances, rendered by `output`."""
    request = Request(APIRequestFactory().get(url))
    paginator = CursorPagination()
    page = paginator.paginate_queryset(Lead.objects.filter(tenant_id=tenant.pk), request)
    document = paginator.get_paginated_response(output(page, many=True).data).data
    return JsonRenderer().render(document)


def _read_as_text(queries: CaptureQueriesContext) -> bool:
    """Whether the page was read as JSON text (its rows' versions, then, unless they were read
    before, the rows as JSON text) rather than as rows."""
    pages = [query["sql"] for query in queries if 'FROM "gtm_api_lead"' in query["sql"]]
    assert pages
    return "xmin" in pages[0] and (len(pages) == 1 or "to_json" in pages[1])


@pytest.mark.parametrize("limit", [1, 3, 50, 200])
def test_every_page_forward_and_back_is_drfs(
    alice: Any, leads: list[Lead], json_rows: bool, limit: int
) -> None:
    url: str | None = f"/v1/leads?limit={limit}"
    seen: list[str] = []
    pages = 0
    while url is not None:  # forward, to the last page
        with CaptureQueriesContext(connection) as queries:
            response = alice.get(url)
        assert response.status_code == 200
        assert response.content == _drf_page(alice.tenant, url)
        assert _read_as_text(queries) is json_rows
        page = response.json()
        seen += [lead["id"] for lead in page["results"]]
        url, last, pages = page["next"], page, pages + 1
    assert seen == sorted((lead.id for lead in leads), reverse=True)
    assert pages == -(-len(leads) // limit)

    back: list[str] = []
    url = last["previous"]
    while url is not None:  # and back by the reverse cursors, to the first page
        response = alice.get(url)
        assert response.content == _drf_page(alice.tenant, url)
        page = response.json()
        back = [lead["id"] for lead in page["results"]] + back
        url = page["previous"]
    assert back + [lead["id"] for lead in last["results"]] == seen


def test_a_page_read_again_is_one_query_of_its_rows_versions(
    alice: Any, leads: list[Lead], json_rows: bool
) -> None:
    url = "/v1/leads?limit=3"
    reads = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            response = alice.get(url)
        assert response.content == _drf_page(alice.tenant, url)
        reads.append([query["sql"] for query in queries if 'FROM "gtm_api_lead"' in query["sql"]])
    # As JSON text: the versions, then the rows as text; then only the versions.
    assert [len(read) for read in reads] == ([2, 1, 1] if json_rows else [1, 1, 1])


def test_a_lead_changed_since_its_page_was_read_is_read_as_it_is_now(
    alice: Any, leads: list[Lead], json_rows: bool
) -> None:
    url = "/v1/leads?limit=50"
    assert alice.get(url).content == _drf_page(alice.tenant, url)
    changed, removed = leads[3], leads[4]
    # Written in ways that send no signal and leave `updated_at` as it was.
    Lead.objects.filter(pk=changed.pk).update(first_name="Changed by an update")
    Lead.objects.filter(pk=removed.pk).delete()
    added = LeadFactory(tenant=alice.tenant, first_name="Added")
    response = alice.get(url)
    assert response.content == _drf_page(alice.tenant, url)
    names = {lead["id"]: lead["first_name"] for lead in response.json()["results"]}
    assert names[changed.pk] == "Changed by an update"
    assert removed.pk not in names and names[added.pk] == "Added"

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE gtm_api_lead SET attributes = %s WHERE id = %s", ['{"by": "SQL"}', changed.pk]
        )
    response = alice.get(url)
    assert response.content == _drf_page(alice.tenant, url)
    (lead,) = [lead for lead in response.json()["results"] if lead["id"] == changed.pk]
    assert lead["attributes"] == {"by": "SQL"}


def test_every_lead_read_on_its_own_is_drfs(alice: Any, leads: list[Lead]) -> None:
    for made in leads:
        lead = Lead.objects.get(pk=made.pk)  # as stored
        with CaptureQueriesContext(connection) as queries:
            response = alice.get(f"/v1/leads/{lead.pk}")
        assert response.status_code == 200
        assert response.content == JsonRenderer().render(LeadOutput(lead).data)
        (read,) = [query["sql"] for query in queries if 'FROM "gtm_api_lead"' in query["sql"]]
        assert ("to_json" in read) is (connection.vendor == "postgresql")
    other = Lead.objects.exclude(tenant_id=alice.tenant.pk).get()
    problem(alice.get(f"/v1/leads/{other.pk}"), 404, "not_found")
    with timezone.override("Asia/Kolkata"):
        response = alice.get(f"/v1/leads/{lead.pk}")
        assert response.content == JsonRenderer().render(LeadOutput(lead).data)
    assert response.json()["created_at"].endswith("+05:30")


def test_every_kind_of_value_is_in_the_pages(alice: Any, leads: list[Lead]) -> None:
    # What the byte-for-byte comparisons above cover, checked on the decoded page.
    results = alice.get("/v1/leads", {"limit": 200}).json()["results"]
    by_id = {lead["id"]: lead for lead in results}
    empty, nulls, rich = (by_id[lead.id] for lead in leads[:3])
    assert empty["email"] is None and empty["attributes"] == {}
    assert [name for name, value in nulls.items() if value is None] == [
        "external_id",
        "phone",
        "company",
        "job_title",
        "country",
        "score",
        "owner",
    ]
    assert rich["first_name"] == "Zoë 😀 𝄞" and rich["job_title"] == CONTROL
    assert rich["attributes"]["big"] == ATTRIBUTES["big"]
    assert rich["attributes"]["nested"] == ATTRIBUTES["nested"]
    assert {lead["created_at"] for lead in results} == {
        "2026-03-01T09:30:00Z",
        "2026-03-01T09:30:15.120000Z",
        "2026-12-31T23:59:59.000005Z",
        "1999-01-02T03:04:05.999999Z",
    }
    raw = alice.get("/v1/leads", {"limit": 200}).content
    assert b"\\u2028" in raw and "\u2028".encode() not in raw  # escaped as DRF escapes it


@pytest.mark.parametrize("limit", [1, 50])
def test_the_headers_are_todays(
    alice: Any, leads: list[Lead], json_rows: bool, monkeypatch: Any, limit: int
) -> None:
    response = alice.get("/v1/leads", {"limit": limit})
    monkeypatch.setattr("gtm_api.api.leads.lead_list", partial(lead_list, json_rows=False))
    today = alice.get("/v1/leads", {"limit": limit})
    assert response.content == today.content
    headers, expected = dict(response.headers), dict(today.headers)
    assert set(headers) == set(expected)
    for changing in ("X-Request-ID", "RateLimit"):  # a new request id, one request fewer left
        assert headers.pop(changing) != expected.pop(changing)
    assert headers == expected
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(response.content))


class _LeadWithLabel(LeadOutput):
    label = serializers.SerializerMethodField()

    class Meta(LeadOutput.Meta):
        fields = [*LeadOutput.Meta.fields, "label"]
        read_only_fields = fields

    def get_label(self, lead: Any) -> str:
        return "computed in Python"


def test_a_field_the_database_cannot_write_keeps_drfs_rendering(
    alice: Any, leads: list[Lead], monkeypatch: Any
) -> None:
    assert json_row(_LeadWithLabel) is None
    monkeypatch.setattr("gtm_api.api.leads.LeadOutput", _LeadWithLabel)
    monkeypatch.setattr("gtm_api.selectors.leads.LeadOutput", _LeadWithLabel)
    url = "/v1/leads?limit=4"
    with CaptureQueriesContext(connection) as queries:
        response = alice.get(url)
    assert not _read_as_text(queries)
    assert response.content == _drf_page(alice.tenant, url, _LeadWithLabel)
    assert {lead["label"] for lead in response.json()["results"]} == {"computed in Python"}


def test_another_time_zone_keeps_drfs_rendering(alice: Any, leads: list[Lead]) -> None:
    url = "/v1/leads?limit=200"
    with timezone.override("Asia/Kolkata"):
        with CaptureQueriesContext(connection) as queries:
            response = alice.get(url)
        assert response.content == _drf_page(alice.tenant, url)
    assert not _read_as_text(queries)
    assert response.json()["results"][0]["created_at"].endswith("+05:30")


@pytest.mark.parametrize(
    "field",
    [
        serializers.SerializerMethodField(),
        serializers.CharField(source="score"),  # an integer column, rendered as a string
        serializers.IntegerField(source="email"),
        serializers.FloatField(source="score"),
        serializers.DateTimeField(source="created_at", format="%Y-%m-%d"),
        serializers.DateTimeField(source="created_at", default_timezone=UTC),
        serializers.ChoiceField(source="score", choices=[(1, "one")]),
        serializers.CharField(source="tenant"),  # a relation
        serializers.CharField(source="*"),
        serializers.ReadOnlyField(source="email"),
    ],
    ids=lambda field: f"{type(field).__name__}({field._kwargs})",
)
def test_only_fields_of_known_kinds_are_written_by_the_database(field: Any) -> None:
    class Output(serializers.ModelSerializer):
        extra = field

        class Meta:
            model = Lead
            fields = ["id", "extra"]

    assert json_row(Output) is None
    Output._declared_fields["extra"] = serializers.CharField(source="email")
    json_row.cache_clear()
    assert json_row(Output) is not None


def test_a_serializer_with_rendering_rules_of_its_own_is_rendered_by_drf() -> None:
    class Output(LeadOutput):
        def to_representation(self, instance: Any) -> Any:
            return {**super().to_representation(instance), "id": "hidden"}

    assert json_row(LeadOutput) is not None
    assert json_row(Output) is None


def _position(lead: Lead) -> str | None:
    """Where PostgreSQL keeps the lead's current version (its `ctid`); None elsewhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT ctid::text FROM gtm_api_lead WHERE id = %s", [lead.pk])
        return str(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_version_written_where_an_earlier_one_was_is_read_as_it_is_now(alice: Any) -> None:
    # Committed writes, each its own transaction: VACUUM frees an old version's place, and a
    # later version of the same lead takes it (PostgreSQL), with another `xmin`.
    def vacuum() -> None:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM gtm_api_lead" if connection.vendor == "postgresql" else "VACUUM")

    lead = LeadFactory(tenant=alice.tenant, first_name="Version 0")
    vacuum()  # the rows earlier tests left behind: their places are free
    Lead.objects.filter(pk=lead.pk).update(first_name="Version 1")  # into the first free place
    url = "/v1/leads?limit=5"
    assert alice.get(url).json()["results"][0]["first_name"] == "Version 1"
    read_at = _position(lead)
    for version in range(2, 12):
        Lead.objects.filter(pk=lead.pk).update(first_name=f"Version {version}")
        vacuum()
        if _position(lead) == read_at:
            break
    assert _position(lead) == read_at  # the place of the version read above, on PostgreSQL
    response = alice.get(url)
    assert response.content == _drf_page(alice.tenant, url)
    assert response.json()["results"][0]["first_name"] == f"Version {version}"


def test_row_texts_hold_so_much_text_then_start_again() -> None:
    texts = RowTexts(limit=10)
    texts.put(("a", "1"), "12345")
    texts.put(("b", "1"), "67890")
    assert texts.every([("a", "1"), ("b", "1")]) == ["12345", "67890"]
    texts.put(("c", "1"), "x")  # 11 characters: emptied first
    assert texts.every([("a", "1")]) is None
    assert texts.every([("c", "1")]) == ["x"]
    assert texts.every([]) == []


def test_rows_read_from_another_server_are_forgotten() -> None:
    texts = RowTexts()
    texts.put(("a", "1"), "text")
    server_seen("elsewhere", "started at noon")
    server_seen("elsewhere", "started at noon")  # the same server again: kept
    assert texts.every([("a", "1")]) == ["text"]
    server_seen("elsewhere", "started at one")  # restored, failed over: another server
    assert texts.every([("a", "1")]) is None


@pytest.mark.django_db(transaction=True)
def test_each_new_connection_tells_which_server_it_found() -> None:
    texts = RowTexts()
    texts.put(("a", "1"), "text")
    connection.close()
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()")
            assert json_rows_module._SERVERS[connection.alias] == cursor.fetchone()[0]
    assert texts.every([("a", "1")]) == ["text"]  # the same server: nothing forgotten
