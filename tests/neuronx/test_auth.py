"""Authentication, tenant pinning and scopes: `Authorization: Bearer <key>` and `X-Tenant-ID`."""

import re

import pytest
from django.test import Client

from gtm_api.models import Lead
from neuronx.models import SCOPES, ApiKey, IdempotencyRecord
from neuronx.tenancy import api_key_create, api_key_revoke
from tests.conftest import Api, lead_body, make_api, problem
from usage.models import UsageEvent

pytestmark = pytest.mark.django_db


class _RawAuthApi(Api):
    def __init__(self, *, client: Client, key: str | None, authorization: str) -> None:
        super().__init__(client=client, key=key)
        self.authorization = authorization

    def _headers(self, headers):
        return {"Authorization": self.authorization, **(headers or {})}


def raw(authorization: str) -> Api:
    """A client sending `authorization` verbatim as its `Authorization` header."""
    return _RawAuthApi(client=Client(), key=None, authorization=authorization)


def _unauthorized(response) -> dict:
    return problem(response, 401, "authentication_failed")


def test_missing_authorization_is_401(anonymous):
    _unauthorized(anonymous.get("/v1/leads"))


def test_every_401_challenges_with_the_bearer_scheme(alice, anonymous):
    """RFC 9110 §15.5.2: a 401 must carry `WWW-Authenticate` naming the scheme to use."""
    revoked = make_api("alice-revoked")
    api_key_revoke(api_key=revoked.api_key)
    responses = {
        "missing": anonymous.get("/v1/leads"),
        "wrong scheme": raw(f"Basic {alice.key}").get("/v1/leads"),
        "unknown key": raw(f"Bearer nxk_{'z' * 12}_{'A' * 40}").get("/v1/leads"),
        "revoked key": revoked.get("/v1/leads"),
        "on a write": anonymous.post("/v1/leads", lead_body()),
    }
    challenges = {
        case: response.headers.get("WWW-Authenticate") for case, response in responses.items()
    }
    assert all(response.status_code == 401 for response in responses.values())
    assert challenges == {case: 'Bearer realm="api"' for case in responses}, challenges


def test_missing_authorization_on_a_write_is_401_and_writes_nothing(anonymous):
    _unauthorized(anonymous.post("/v1/leads", lead_body()))
    assert not Lead.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic YWxpY2U6c2VjcmV0",  # wrong scheme
        "Token {key}",  # wrong scheme, real key
        "{key}",  # no scheme at all
        "Bearer",  # scheme without a key
        "Bearer    ",
        "Bearer nxk_short_key",  # malformed
        "Bearer {key}x",  # malformed: one character too many
        "Bearer not-a-key-at-all",
    ],
)
def test_wrong_scheme_or_malformed_key_is_401(alice, authorization):
    _unauthorized(raw(authorization.format(key=alice.key)).get("/v1/leads"))


def test_unknown_but_well_formed_key_is_401(alice):
    prefix = "z" * 12
    _unauthorized(raw(f"Bearer nxk_{prefix}_{'A' * 40}").get("/v1/leads"))


def test_known_prefix_with_a_wrong_secret_is_401(alice):
    prefix = alice.api_key.prefix
    forged = f"nxk_{prefix}_{'B' * 40}"
    assert forged != alice.key
    _unauthorized(raw(f"Bearer {forged}").get("/v1/leads"))


def test_scheme_is_case_insensitive(alice):
    assert raw(f"bearer {alice.key}").get("/v1/leads").status_code == 200


def test_revoked_key_is_401(alice):
    assert alice.get("/v1/leads").status_code == 200
    api_key_revoke(api_key=alice.api_key)
    body = _unauthorized(alice.get("/v1/leads"))
    assert "revoked" in body["detail"]
    _unauthorized(alice.post("/v1/leads", lead_body()))
    assert not Lead.objects.exists()


def test_revoking_one_key_leaves_the_tenants_other_keys_working(alice):
    other = api_key_create(tenant=alice.tenant, name="second")
    api_key_revoke(api_key=alice.api_key)
    second = Api(client=Client(), key=other.plaintext)
    assert second.get("/v1/leads").status_code == 200


@pytest.mark.parametrize("pin", ["id", "slug"])
def test_x_tenant_id_naming_the_keys_tenant_passes(alice, pin):
    value = alice.tenant.id if pin == "id" else alice.tenant.slug
    assert alice.get("/v1/leads", **{"X-Tenant-ID": value}).status_code == 200
    response = alice.post("/v1/leads", lead_body(), headers={"X-Tenant-ID": value})
    assert response.status_code == 201, response.content
    assert Lead.objects.get().tenant == alice.tenant


@pytest.mark.parametrize("pin", ["bob-id", "bob-slug", "nonsense", ""])
def test_x_tenant_id_naming_another_tenant_is_403(alice, bob, pin):
    value = {"bob-id": bob.tenant.id, "bob-slug": bob.tenant.slug}.get(pin, pin)
    problem(alice.get("/v1/leads", **{"X-Tenant-ID": value}), 403, "tenant_mismatch")


def test_tenant_mismatch_on_a_write_writes_nothing_in_either_tenant(alice, bob):
    response = alice.post("/v1/leads", lead_body(), headers={"X-Tenant-ID": bob.tenant.slug})
    problem(response, 403, "tenant_mismatch")
    assert not Lead.objects.exists()
    assert not UsageEvent.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_key_lacking_the_write_scope_is_403_naming_it(db):
    reader = make_api("alice", scopes=["leads:read"])
    assert reader.get("/v1/leads").status_code == 200
    body = problem(reader.post("/v1/leads", lead_body()), 403, "permission_denied")
    assert body["required_scope"] == "leads:write"
    assert not Lead.objects.exists()


def test_key_lacking_the_read_scope_is_403_naming_it(db):
    writer = make_api("alice", scopes=["leads:write"])
    lead = writer.post("/v1/leads", lead_body())
    assert lead.status_code == 201
    body = problem(writer.get("/v1/leads"), 403, "permission_denied")
    assert body["required_scope"] == "leads:read"
    body = problem(writer.get(f"/v1/leads/{lead.json()['id']}"), 403, "permission_denied")
    assert body["required_scope"] == "leads:read"


def test_a_scope_denial_does_not_consume_the_idempotency_key(db):
    reader = make_api("alice", scopes=["leads:read"])
    writer = make_api("alice")
    problem(reader.post("/v1/leads", lead_body(), idempotency_key="same"), 403, "permission_denied")
    response = writer.post("/v1/leads", lead_body(), idempotency_key="same")
    assert response.status_code == 201, response.content
    assert not response.has_header("Idempotent-Replayed")


def test_keys_are_stored_hashed_never_in_plaintext(alice):
    row = ApiKey.objects.filter(pk=alice.api_key.pk).values().get()
    secret = alice.key.rsplit("_", 1)[1]
    stored = " ".join(str(value) for value in row.values())
    assert alice.key not in stored
    assert secret not in stored
    assert re.fullmatch(r"[0-9a-f]{64}", row["key_hash"])
    assert alice.key.startswith(f"nxk_{row['prefix']}_")


def test_two_keys_never_share_a_hash_or_plaintext(alice):
    other = api_key_create(tenant=alice.tenant)
    assert other.plaintext != alice.key
    assert other.api_key.key_hash != alice.api_key.key_hash
    assert other.api_key.prefix != alice.api_key.prefix


def test_scopes_default_to_all(alice):
    assert ApiKey.objects.get(pk=alice.api_key.pk).scopes == list(SCOPES)
    assert {
        "leads:read",
        "leads:write",
        "leads:qualify",
        "leads:route",
        "appointments:write",
        "payments:write",
        "webhooks:manage",
    } == set(SCOPES)


def test_the_tenant_comes_from_the_key_not_the_request(alice, bob):
    response = alice.post("/v1/leads", lead_body())
    assert response.status_code == 201
    assert Lead.objects.get().tenant_id == alice.tenant.id
    assert bob.get("/v1/leads").json()["results"] == []
