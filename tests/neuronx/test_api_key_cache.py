"""API keys are served from the shared cache, and every change still shows on the next request."""

import pickle
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from neuronx.models import ApiKey
from neuronx.tenancy import (
    _api_key_cache_add,
    api_key_entry,
    api_key_revoke,
    tenant_set_rate_limit,
)
from tests.conftest import problem
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def queries(api, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(path).status_code == 200
    return len(ctx)


def test_once_cached_a_key_needs_no_query(alice):
    lead = LeadFactory(tenant=alice.tenant)
    assert queries(alice, f"/v1/leads/{lead.id}") == 2  # the key, then the lead
    assert queries(alice, f"/v1/leads/{lead.id}") == 1


def test_a_revoked_key_is_refused_on_the_next_request(alice):
    assert alice.get("/v1/leads").status_code == 200
    api_key_revoke(api_key=alice.api_key)
    problem(alice.get("/v1/leads"), 401, "authentication_failed")


def test_a_tenant_change_shows_on_the_next_request(alice):
    assert alice.get("/v1/leads").headers["RateLimit-Policy"] == '"read";q=600;w=60'
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="5/m")
    assert alice.get("/v1/leads").headers["RateLimit-Policy"] == '"read";q=5;w=60'


def test_a_lookup_made_before_a_revocation_cannot_be_cached_after_it(alice):
    """The race: a request reads the key, the key is revoked, then that request caches it."""
    looked_up = time.monotonic()
    stale = ApiKey.objects.select_related("tenant").get(pk=alice.api_key.pk)
    api_key_revoke(api_key=alice.api_key)
    _api_key_cache_add(stale, looked_up)
    problem(alice.get("/v1/leads"), 401, "authentication_failed")


def test_without_the_cache_keys_are_looked_up_in_the_database(alice, settings, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    assert alice.get("/v1/leads").status_code == 200
    assert "API key cache unavailable; looking keys up in the database" in caplog.messages
    api_key_revoke(api_key=alice.api_key)
    problem(alice.get("/v1/leads"), 401, "authentication_failed")


def test_no_cache_when_disabled(alice, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    lead = LeadFactory(tenant=alice.tenant)
    assert queries(alice, f"/v1/leads/{lead.id}") == 2
    assert queries(alice, f"/v1/leads/{lead.id}") == 2


def test_an_entry_read_again_is_decoded_once_into_instances_of_its_own(alice):
    api_key = ApiKey.objects.select_related("tenant").get(pk=alice.api_key.pk)
    raw = pickle.dumps(api_key)
    decoded: list[bytes] = []

    def decode(value: bytes) -> object:
        decoded.append(value)
        return pickle.loads(value)

    first, second = (api_key_entry(raw, decode) for _ in range(2))
    assert decoded == [raw]
    assert first is not second and first.tenant is not second.tenant
    for copy in (first, second):
        assert copy.pk == api_key.pk and copy.key_hash == api_key.key_hash
        assert copy.scopes == api_key.scopes and copy.scopes is not api_key.scopes
        assert copy.tenant.rate_limits == api_key.tenant.rate_limits
    first.tenant.rate_limits["read"] = "1/m"  # one request's instances are its own
    first.scopes.append("everything")
    third = api_key_entry(raw, decode)
    assert third.tenant.rate_limits == api_key.tenant.rate_limits
    assert third.scopes == api_key.scopes
    with CaptureQueriesContext(connection) as ctx:
        assert third.tenant.slug == api_key.tenant.slug  # loaded with the key, as unpickled
    assert len(ctx) == 0

    # Other bytes (the key written again, a tombstone) are decoded afresh.
    assert api_key_entry(pickle.dumps("changed"), decode) == "changed"
    assert api_key_entry(pickle.dumps("changed"), decode) == "changed"
    assert len(decoded) == 3
