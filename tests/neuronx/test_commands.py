"""The internal team's commands: tenants, keys, rate limits, the demo seed and the usage report."""

import csv
import io
import json
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from neuronx.models import SCOPES, ApiKey, Tenant
from tests.conftest import Api, lead_body, problem
from tests.factories import TenantFactory
from usage.models import UsageEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def api_with(key: str) -> Api:
    return Api(client=Client(), key=key)


# -- create_tenant -------------------------------------------------------------------------------


def test_create_tenant_prints_its_id_last():
    lines = run("create_tenant", "acme", "--name", "Acme Corp")
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme Corp"
    assert lines[-1] == tenant.id
    assert tenant.rate_limits == {}


def test_create_tenant_defaults_the_name_to_the_slug():
    run("create_tenant", "globex")
    assert Tenant.objects.get(slug="globex").name == "globex"


def test_create_tenant_twice_is_an_error():
    run("create_tenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme", "--name", "Other")
    assert Tenant.objects.get(slug="acme").name == "acme"


@pytest.mark.parametrize("slug", ["acme corp", "acme/eu", "x" * 64, ""])
def test_create_tenant_rejects_a_slug_that_is_not_a_slug(slug):
    with pytest.raises(CommandError):
        run("create_tenant", slug)
    assert not Tenant.objects.exists()


# -- create_api_key ------------------------------------------------------------------------------


def test_create_api_key_prints_a_working_full_scope_key_last():
    TenantFactory(slug="acme")
    lines = run("create_api_key", "acme", "--name", "crm sync")
    key = lines[-1]
    stored = ApiKey.objects.get()
    assert stored.name == "crm sync" and stored.tenant.slug == "acme"
    assert stored.scopes == list(SCOPES)
    assert key.startswith(f"nxk_{stored.prefix}_")
    assert key not in stored.key_hash
    api = api_with(key)
    assert api.get("/v1/leads").status_code == 200
    assert api.post("/v1/leads", lead_body()).status_code == 201


def test_create_api_key_with_scopes_limits_the_key():
    TenantFactory(slug="acme")
    key = run("create_api_key", "acme", "--scopes", "leads:read, leads:qualify")[-1]
    assert ApiKey.objects.get().scopes == ["leads:read", "leads:qualify"]
    api = api_with(key)
    assert api.get("/v1/leads").status_code == 200
    body = problem(api.post("/v1/leads", lead_body()), 403, "permission_denied")
    assert body["required_scope"] == "leads:write"


@pytest.mark.parametrize("scopes", ["leads:read,leads:delete", "admin", "", " , "])
def test_create_api_key_rejects_unknown_or_empty_scopes(scopes):
    TenantFactory(slug="acme")
    with pytest.raises(CommandError):
        run("create_api_key", "acme", "--scopes", scopes)
    assert not ApiKey.objects.exists()


def test_create_api_key_for_an_unknown_tenant_is_an_error():
    with pytest.raises(CommandError, match="nobody"):
        run("create_api_key", "nobody")
    assert not ApiKey.objects.exists()


# -- revoke_api_key ------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["id", "prefix"])
def test_revoke_api_key_stops_the_key(by):
    TenantFactory(slug="acme")
    key = run("create_api_key", "acme")[-1]
    other = run("create_api_key", "acme")[-1]
    stored = ApiKey.objects.get(prefix=key.split("_")[1])
    assert api_with(key).get("/v1/leads").status_code == 200
    run("revoke_api_key", stored.id if by == "id" else stored.prefix)
    problem(api_with(key).get("/v1/leads"), 401, "authentication_failed")
    assert api_with(other).get("/v1/leads").status_code == 200
    revoked_at = ApiKey.objects.get(pk=stored.pk).revoked_at
    assert revoked_at is not None
    run("revoke_api_key", stored.id)  # revoking again keeps the first revocation time
    assert ApiKey.objects.get(pk=stored.pk).revoked_at == revoked_at


def test_revoke_an_unknown_key_is_an_error():
    with pytest.raises(CommandError):
        run("revoke_api_key", "key_NOPE")


# -- set_rate_limit ------------------------------------------------------------------------------


def test_set_rate_limit_overrides_one_class():
    TenantFactory(slug="acme")
    key = run("create_api_key", "acme")[-1]
    run("set_rate_limit", "acme", "write", "5/m")
    run("set_rate_limit", "acme", "read", "100/h")
    assert Tenant.objects.get(slug="acme").rate_limits == {"write": "5/m", "read": "100/h"}
    response = api_with(key).post("/v1/leads", lead_body())
    assert response["RateLimit-Policy"] == '"write";q=5;w=60'


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("acme", "deletes", "5/m"), "deletes"),
        (("acme", "write", "five"), "five"),
        (("acme", "write", "0/m"), "0/m"),
        (("nobody", "write", "5/m"), "nobody"),
    ],
)
def test_set_rate_limit_rejects_bad_input(args, match):
    TenantFactory(slug="acme")
    with pytest.raises(CommandError, match=match):
        run("set_rate_limit", *args)
    assert Tenant.objects.get(slug="acme").rate_limits == {}


# -- seed_demo -----------------------------------------------------------------------------------


def test_seed_demo_prints_a_working_full_scope_key_last():
    key = run("seed_demo")[-1]
    stored = ApiKey.objects.get()
    assert stored.tenant.slug == "demo"
    assert stored.scopes == list(SCOPES)
    api = api_with(key)
    assert api.post("/v1/leads", lead_body()).status_code == 201
    assert len(api.get("/v1/leads").json()["results"]) == 1


def test_seed_demo_twice_reuses_the_tenant_with_a_new_key():
    first = run("seed_demo")[-1]
    second = run("seed_demo")[-1]
    assert first != second
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert ApiKey.objects.filter(tenant__slug="demo").count() == 2
    for key in (first, second):
        assert api_with(key).get("/v1/leads").status_code == 200


def test_seed_demo_for_a_named_tenant():
    key = run("seed_demo", "--tenant", "acme")[-1]
    assert ApiKey.objects.get().tenant.slug == "acme"
    assert api_with(key).get("/v1/leads").status_code == 200


# -- usage_report --------------------------------------------------------------------------------


def _usage(tenant: Tenant, dimension: str, quantity: int, at: datetime) -> None:
    UsageEvent.objects.create(
        tenant=tenant,
        dimension=dimension,
        quantity=quantity,
        occurred_at=at,
        source="internal:test",
    )


@pytest.fixture
def metered(db: None) -> dict[str, Tenant]:
    alice, bob = TenantFactory(slug="alice"), TenantFactory(slug="bob")
    _usage(alice, "lead.ingested", 1, datetime(2026, 3, 1, 9, tzinfo=UTC))
    _usage(alice, "lead.ingested", 1, datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    _usage(alice, "lead.ingested", 250, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    _usage(alice, "lead.qualified", 1, datetime(2026, 3, 2, 12, tzinfo=UTC))
    _usage(bob, "lead.ingested", 7, datetime(2026, 3, 1, 12, tzinfo=UTC))
    _usage(bob, "payment.initiated", 2, datetime(2026, 3, 5, 12, tzinfo=UTC))
    return {"alice": alice, "bob": bob}


def _totals(rows: list[dict]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        totals[(row["tenant"], row["dimension"])] += int(row["quantity"])
    return dict(totals)


def _db_totals() -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for event in UsageEvent.objects.select_related("tenant"):
        totals[(event.tenant.slug, event.dimension)] += event.quantity
    return dict(totals)


def test_usage_report_json_matches_the_events(metered):
    rows = json.loads("\n".join(run("usage_report")))
    assert (
        _totals(rows)
        == _db_totals()
        == {
            ("alice", "lead.ingested"): 252,
            ("alice", "lead.qualified"): 1,
            ("bob", "lead.ingested"): 7,
            ("bob", "payment.initiated"): 2,
        }
    )
    by_day = {
        (r["tenant"], r["dimension"], r["period_start"][:10]): (r["quantity"], r["events"])
        for r in rows
    }
    assert by_day[("alice", "lead.ingested", "2026-03-01")] == (2, 2)
    assert by_day[("alice", "lead.ingested", "2026-03-02")] == (250, 1)
    assert all(r["period"] == "day" for r in rows)


def test_usage_report_csv_matches_the_json(metered):
    lines = run("usage_report", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert lines[0] == "tenant,dimension,period,period_start,quantity,events"
    assert _totals(rows) == _db_totals()
    as_json = json.loads("\n".join(run("usage_report")))
    assert [(r["tenant"], r["dimension"], r["period_start"], int(r["quantity"])) for r in rows] == [
        (r["tenant"], r["dimension"], r["period_start"], r["quantity"]) for r in as_json
    ]


def test_usage_report_filters_by_tenant(metered):
    rows = json.loads("\n".join(run("usage_report", "--tenant", "bob")))
    assert _totals(rows) == {("bob", "lead.ingested"): 7, ("bob", "payment.initiated"): 2}


def test_usage_report_since_is_inclusive_and_until_exclusive(metered):
    rows = json.loads(
        "\n".join(run("usage_report", "--since", "2026-03-02", "--until", "2026-03-05"))
    )
    assert _totals(rows) == {("alice", "lead.ingested"): 250, ("alice", "lead.qualified"): 1}
    rows = json.loads(
        "\n".join(
            run(
                "usage_report",
                "--since",
                "2026-03-01T12:00:00Z",
                "--until",
                "2026-03-02T00:00:00Z",
                "--tenant",
                "alice",
            )
        )
    )
    assert _totals(rows) == {("alice", "lead.ingested"): 1}


def test_usage_report_rejects_a_bad_date(metered):
    with pytest.raises(CommandError, match="yesterday"):
        run("usage_report", "--since", "yesterday")


def test_usage_report_counts_what_the_api_metered(db):
    tenant = TenantFactory(slug="acme")
    key = run("create_api_key", "acme")[-1]
    api = api_with(key)
    for n in range(3):
        assert (
            api.post(
                "/v1/leads", lead_body(email=f"l{n}@acme-corp.com"), idempotency_key=f"k{n}"
            ).status_code
            == 201
        )
    api.post("/v1/leads", lead_body(email="l0@acme-corp.com"), idempotency_key="k0")  # replay
    rows = json.loads("\n".join(run("usage_report", "--tenant", tenant.slug)))
    assert _totals(rows) == {("acme", "lead.ingested"): 3}
