"""Rate-limit classes per API key: RateLimit / RateLimit-Policy headers, 429 and tenant overrides.

Budgets counted within a test use hour windows (or wait out the end of a minute window) so that
a window boundary never falls between two requests of one test. Windows are offset per caller
(django-ratelimit), and each test's keys are new, so an hour window may end at any second: a
test waits out the windows of its callers that end within the next 15 seconds.
"""

import os
import re
import time

import pytest
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.test import Client
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, get_usage
from django_redis.cache import RedisCache
from redis import Redis, RedisError
from redis.connection import AbstractConnection as RedisConnection

from gtm_api.models import Lead
from neuronx import redis_direct
from neuronx.models import ApiKey, Tenant
from neuronx.ratelimit import rate_consume
from neuronx.tenancy import (
    TenancyError,
    api_key_create,
    api_key_revoke,
    tenant_set_rate_limit,
)
from tests.conftest import Api, lead_body, make_api, problem

pytestmark = pytest.mark.django_db


def _wait_out_hour_windows(*callers: str) -> None:
    """Wait until none of the hour windows of `callers` ends within 15 s. A window named by its
    last whole second `w` counts requests while `int(time.time()) <= w`: it ends at `w + 1`."""
    while True:
        left = min(_get_window(caller, 3600) + 1 - time.time() for caller in callers)
        if left >= 15:
            return
        time.sleep(left + 0.5)


@pytest.fixture(autouse=True)
def _clear_of_window_ends(request: pytest.FixtureRequest) -> None:
    callers = ["anon:127.0.0.1"]  # the test client's address
    for name in ("alice", "bob"):
        if name in request.fixturenames:
            callers.append(f"key:{request.getfixturevalue(name).api_key.id}")
    _wait_out_hour_windows(*callers)


_RATELIMIT = re.compile(r'^"(?P<cls>[a-z]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def _remaining(response, rate_class: str) -> int:
    match = _RATELIMIT.match(response["RateLimit"])
    assert match, response["RateLimit"]
    assert match["cls"] == rate_class
    return int(match["r"])


def _reset(response) -> int:
    match = _RATELIMIT.match(response["RateLimit"])
    assert match, response["RateLimit"]
    return int(match["t"])


def _write(api: Api, n: int):
    return api.post("/v1/leads", lead_body(email=f"lead{n}@acme-corp.com"))


def test_a_minute_override_is_advertised_as_a_60_second_window(alice):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="3/m")
    response = _write(alice, 0)
    assert response.status_code == 201
    assert response["RateLimit-Policy"] == '"write";q=3;w=60'
    assert _remaining(response, "write") == 2
    assert 0 <= _reset(response) <= 60


def _with_seconds_left_in_the_minute(api: Api, seconds: int = 10) -> None:
    """Wait out the caller's current minute window if it ends within `seconds`.

    Windows of one period are aligned per caller, whatever the class, so a read shows where the
    write window stands; this keeps a 4-request sequence inside one window.
    """
    tenant_set_rate_limit(tenant=api.tenant, rate_class="read", rate="1000/m")
    left = _reset(api.get("/v1/leads"))
    if left < seconds:
        time.sleep(left + 1.1)


def test_the_write_after_the_budget_is_429_with_retry_after(alice):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="3/m")
    _with_seconds_left_in_the_minute(alice)
    responses = [_write(alice, n) for n in range(4)]
    assert [r.status_code for r in responses[:3]] == [201, 201, 201]
    assert [_remaining(r, "write") for r in responses] == [2, 1, 0, 0]
    assert {r["RateLimit-Policy"] for r in responses} == {'"write";q=3;w=60'}
    limited = responses[3]
    body = problem(limited, 429, "rate_limited")
    retry_after = int(limited["Retry-After"])
    assert 1 <= retry_after <= 60
    assert abs(retry_after - _reset(limited)) <= 1
    assert body["retry_after"] == _reset(limited)
    assert Lead.objects.count() == 3


def test_a_rate_limited_write_does_not_consume_its_idempotency_key(alice):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="1/h")
    assert _write(alice, 0).status_code == 201
    problem(
        alice.post("/v1/leads", lead_body(email="x@acme-corp.com"), idempotency_key="later"),
        429,
        "rate_limited",
    )
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="10/h")
    response = alice.post("/v1/leads", lead_body(email="x@acme-corp.com"), idempotency_key="later")
    assert response.status_code == 201 and not response.has_header("Idempotent-Replayed")


def test_reads_are_counted_separately_from_writes(alice):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="1/h")
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="5/h")
    assert _write(alice, 0).status_code == 201
    problem(_write(alice, 1), 429, "rate_limited")
    first_read = alice.get("/v1/leads")
    second_read = alice.get("/v1/leads")
    assert first_read.status_code == second_read.status_code == 200
    assert first_read["RateLimit-Policy"] == '"read";q=5;w=3600'
    assert [_remaining(first_read, "read"), _remaining(second_read, "read")] == [4, 3]


def test_read_class_default_applies_without_an_override(alice, settings):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="1/h")
    limit, _, _ = settings.RATE_LIMITS["read"].partition("/")
    response = alice.get("/v1/leads")
    assert response["RateLimit-Policy"].startswith(f'"read";q={limit};w=')
    assert _remaining(response, "read") == int(limit) - 1


def test_each_api_key_has_its_own_budget(alice):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="2/h")
    issued = api_key_create(tenant=alice.tenant)
    _wait_out_hour_windows(f"key:{issued.api_key.id}")
    second = Api(client=alice.client, key=issued.plaintext)
    assert [_write(alice, n).status_code for n in range(3)] == [201, 201, 429]
    response = _write(second, 10)
    assert response.status_code == 201
    assert _remaining(response, "write") == 1


def test_an_override_for_one_tenant_leaves_others_on_the_default(alice, bob, settings):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="1/h")
    limit, _, _ = settings.RATE_LIMITS["write"].partition("/")
    _write(alice, 0)
    problem(_write(alice, 1), 429, "rate_limited")
    response = _write(bob, 0)
    assert response.status_code == 201
    assert response["RateLimit-Policy"].startswith(f'"write";q={limit};w=')


def test_the_budget_is_held_in_the_shared_cache(alice):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="1/h")
    assert _write(alice, 0).status_code == 201
    problem(_write(alice, 1), 429, "rate_limited")
    cache.clear()  # what a new window (or a cache flush) does
    assert _write(alice, 2).status_code == 201


def test_error_responses_carry_the_headers_too(alice, anonymous):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="50/h")
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="40/h")
    unauthenticated = anonymous.get("/v1/leads")
    not_found = alice.get("/v1/leads/lead_DOESNOTEXIST")
    invalid = alice.post("/v1/leads", lead_body(email="nope"))
    denied = make_api("alice", scopes=["leads:read"]).post("/v1/leads", lead_body())
    problem(unauthenticated, 401, "authentication_failed")
    problem(not_found, 404, "not_found")
    problem(invalid, 422, "validation_error")
    problem(denied, 403, "permission_denied")
    assert not_found["RateLimit-Policy"] == '"read";q=50;w=3600'
    assert invalid["RateLimit-Policy"] == '"write";q=40;w=3600'
    assert denied["RateLimit-Policy"] == '"write";q=40;w=3600'
    assert unauthenticated["RateLimit-Policy"].startswith('"read";q=')
    for response in (unauthenticated, not_found, invalid, denied):
        assert _RATELIMIT.match(response["RateLimit"]), response["RateLimit"]


def test_unauthenticated_calls_are_limited_too(anonymous, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "2/h"}
    assert [anonymous.get("/v1/leads").status_code for _ in range(2)] == [401, 401]
    problem(anonymous.get("/v1/leads"), 429, "rate_limited")


@pytest.mark.parametrize(
    ("rate_class", "rate"),
    [
        ("write", "fast"),
        ("write", "0/m"),
        ("write", "5/x"),
        ("write", "5 / m"),
        ("write", "-1/m"),
        ("write", "5/0m"),  # a zero-length window
        ("write", "5/00s"),
        ("write", ""),
        ("deletes", "5/m"),
        ("", "5/m"),
    ],
)
def test_set_rate_limit_rejects_a_bad_rate_or_class(alice, rate_class, rate):
    with pytest.raises(TenancyError):
        tenant_set_rate_limit(tenant=alice.tenant, rate_class=rate_class, rate=rate)
    assert Tenant.objects.get(pk=alice.tenant.pk).rate_limits == {}


@pytest.mark.parametrize("rate", ["5/m", "100/h", "10/30s", "1000/d", "7/s"])
def test_set_rate_limit_accepts_documented_rates(alice, rate):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="bulk", rate=rate)
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="9/h")
    assert Tenant.objects.get(pk=alice.tenant.pk).rate_limits == {"bulk": rate, "write": "9/h"}


def _caller_usage(request, api_key, rate: str) -> int:
    """One request counted the way django-ratelimit's own `get_usage` counts it."""
    usage = get_usage(
        request,
        group="neuronx:write",
        key=lambda group, req: f"key:{api_key.id}",
        rate=rate,
        increment=True,
    )
    return int(usage["count"])


@pytest.fixture
def redis_cache(settings):
    """The shared Redis cache that the one-round-trip counter and the lookahead run on: the
    suite's own on the production services, else (the embedded run) a Redis at 127.0.0.1."""
    if isinstance(caches[DEFAULT_CACHE_ALIAS], RedisCache):
        return caches[DEFAULT_CACHE_ALIAS]
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
    try:
        Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except RedisError:
        pytest.skip(f"needs a Redis server: none answers at {url} (set TEST_REDIS_URL)")
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}}
    caches[DEFAULT_CACHE_ALIAS].clear()
    return caches[DEFAULT_CACHE_ALIAS]


def test_the_redis_counter_shares_its_budget_and_expiry_with_django_ratelimit(
    alice, rf, redis_cache
):
    # Processes of the previous release count with django-ratelimit while a deploy rolls out:
    # both must count the same key, from the same value, with the same expiry.
    tenant = tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="6/h")
    api_key = ApiKey.objects.select_related("tenant").get(pk=alice.api_key.pk)
    assert api_key.tenant.pk == tenant.pk
    request = rf.post("/v1/leads")
    ours, theirs = [], []
    for _ in range(4):
        state = rate_consume(request=request, api_key=api_key, rate_class="write")
        assert state is not None
        ours.append((6 - state.remaining, state.exceeded))
        theirs.append(_caller_usage(request, api_key, "6/h"))
    assert ours == [(1, False), (3, False), (5, False), (6, True)]
    assert theirs == [2, 4, 6, 8]
    assert state.headers()["RateLimit-Policy"] == '"write";q=6;w=3600'
    caller = f"key:{api_key.id}"
    key = _make_cache_key("neuronx:write", _get_window(caller, 3600), "6/h", caller, ALL)
    assert cache.get(key) == 8
    assert 3600 < cache.ttl(key) <= 3600 + EXPIRATION_FUDGE


def test_an_unreachable_cache_fails_open_with_a_warning(alice, settings, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens on the discard port
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="1/h")
    responses = [alice.get("/v1/leads") for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert all(not r.has_header("RateLimit") for r in responses)
    assert all(not r.has_header("RateLimit-Policy") for r in responses)
    warnings = [r for r in caplog.records if r.name == "neuronx.ratelimit"]
    assert [r.getMessage() for r in warnings] == ["rate limiter unavailable; failing open"] * 2


@pytest.fixture
def redis_round_trips(monkeypatch):
    """How many times the app has sent commands to Redis (a pipeline is one), through redis-py
    or on the direct connection."""
    sent = []
    send = RedisConnection.send_packed_command
    exchange = redis_direct._exchange

    def counted(self, command, check_health=True):
        sent.append(command)
        return send(self, command, check_health)

    def counted_directly(sock, commands):
        sent.append(commands)
        return exchange(sock, commands)

    monkeypatch.setattr(RedisConnection, "send_packed_command", counted)
    monkeypatch.setattr(redis_direct, "_exchange", counted_directly)
    return sent


def test_a_key_seen_before_is_read_and_counted_in_one_round_trip(
    alice, settings, redis_round_trips, redis_cache
):
    # The default budget, not a tenant override: changing the tenant un-caches its keys a while.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "5/h"}
    first = alice.get("/v1/leads")  # the entry read, the key cached, the request counted
    assert len(redis_round_trips) >= 3
    second = alice.get("/v1/leads")  # counted ahead, once the direct connection is set up
    redis_round_trips.clear()
    responses = [alice.get("/v1/leads") for _ in range(5)]
    assert len(redis_round_trips) == 5
    everything = [first, second, *responses]
    assert [r.status_code for r in everything] == [200] * 5 + [429] * 2
    assert [_remaining(r, "read") for r in everything] == [4, 3, 2, 1, 0, 0, 0]
    assert {r["RateLimit-Policy"] for r in everything} == {'"read";q=5;w=3600'}


def test_rate_limits_stay_exact_when_counted_ahead_across_clients(alice, redis_cache):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="write", rate="5/h")
    other = Api(client=Client(), key=alice.key, tenant=alice.tenant, api_key=alice.api_key)
    responses = [_write(alice if n % 2 else other, n) for n in range(9)]
    assert [r.status_code for r in responses] == [201] * 5 + [429] * 4
    assert Lead.objects.count() == 5


def test_a_known_prefix_with_a_wrong_secret_does_not_spend_the_keys_budget(alice, redis_cache):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="5/h")
    assert _remaining(alice.get("/v1/leads"), "read") == 4
    prefix = alice.key.rsplit("_", 1)[0]
    forged = Api(client=Client(), key=f"{prefix}_{'x' * 40}")
    for _ in range(3):
        problem(forged.get("/v1/leads"), 401, "authentication_failed")
    assert _remaining(alice.get("/v1/leads"), "read") == 3


def test_a_key_revoked_after_it_was_seen_is_refused_on_the_next_request(alice, redis_cache):
    assert alice.get("/v1/leads").status_code == 200
    assert alice.get("/v1/leads").status_code == 200  # read and counted in one round trip
    api_key_revoke(api_key=ApiKey.objects.get(pk=alice.api_key.pk))
    problem(alice.get("/v1/leads"), 401, "authentication_failed")


def test_a_new_override_counts_on_its_own_budget_from_the_next_request(alice, redis_cache):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="5/h")
    assert [_remaining(alice.get("/v1/leads"), "read") for _ in range(3)] == [4, 3, 2]
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="7/h")
    response = alice.get("/v1/leads")
    assert response["RateLimit-Policy"] == '"read";q=7;w=3600'
    assert _remaining(response, "read") == 6
    assert _remaining(alice.get("/v1/leads"), "read") == 5


def test_a_redis_that_lost_the_script_still_counts_each_request_once(alice, redis_cache):
    tenant_set_rate_limit(tenant=alice.tenant, rate_class="read", rate="5/h")
    assert _remaining(alice.get("/v1/leads"), "read") == 4
    assert _remaining(alice.get("/v1/leads"), "read") == 3
    cache.client.get_client(write=True).script_flush()
    assert _remaining(alice.get("/v1/leads"), "read") == 2
    assert _remaining(alice.get("/v1/leads"), "read") == 1
