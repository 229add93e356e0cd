"""Rate-limit classes counted per API key on the shared cache (django-ratelimit).

Headers follow the IETF httpapi RateLimit draft: `RateLimit-Policy: "write";q=300;w=60` and
`RateLimit: "write";r=297;t=42`. When the cache is unreachable the limiter fails open and logs a
warning: an outage of the counter must not become an outage of the API.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django_ratelimit import ALL
from django_ratelimit.core import (
    EXPIRATION_FUDGE,
    _get_window,
    _make_cache_key,
    _split_rate,
    get_usage,
)
from django_redis.cache import RedisCache
from redis.exceptions import NoScriptError, ResponseError

from neuronx.models import ApiKey
from neuronx.redis_direct import direct_redis
from neuronx.tenancy import api_key_entry

logger = logging.getLogger("neuronx.ratelimit")

# django-ratelimit counts with `add` (SET NX with the window's expiry) and, when the counter
# exists, an `INCR` script: two round trips per request. This script does both at once on the
# same key, with the same expiry and the same count, so processes running either code share
# one budget exactly (an INCR that creates the key is what a successful `add` stores).
_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True)
class RateState:
    rate_class: str
    limit: int
    window: int
    remaining: int
    reset: int
    exceeded: bool

    def headers(self) -> dict[str, str]:
        name = f'"{self.rate_class}"'
        return {
            "RateLimit-Policy": f"{name};q={self.limit};w={self.window}",
            "RateLimit": f"{name};r={self.remaining};t={self.reset}",
        }


def rate_for(api_key: ApiKey | None, rate_class: str) -> str:
    return _rate(api_key.tenant.rate_limits if api_key is not None else {}, rate_class)


def _rate(rate_limits: dict[str, str], rate_class: str) -> str:
    override = rate_limits.get(rate_class)
    return str(override) if override else str(settings.RATE_LIMITS[rate_class])


def _caller(api_key_id: str) -> str:
    return f"key:{api_key_id}"


@dataclass(frozen=True)
class CountedAhead:
    """One request counted before its API key was authenticated (`rate_count_ahead`)."""

    caller: str
    rate: str
    count: int
    time_left: int


def rate_count_ahead(
    *, api_key_id: str, rate_limits: dict[str, str], rate_class: str, read: str
) -> tuple[CountedAhead, Any] | None:
    """Count one request for the key `api_key_id` (its tenant's overrides `rate_limits`) and
    read the cache entry `read`, in one Redis round trip: (the count, the entry's value or None).

    For a caller that expects to be that key: `rate_consume` takes the count only if the key
    authenticated is that key with that rate. None when the cache is not Redis or the round trip
    failed: the caller then reads and counts the usual way, which reports the failure.
    """
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    if not getattr(settings, "RATELIMIT_ENABLE", True) or not isinstance(cache, RedisCache):
        return None
    caller, rate = _caller(api_key_id), _rate(rate_limits, rate_class)
    _, period = _split_rate(rate)
    try:
        client = cache.client
        redis = client.get_client(write=True)
        key, window = _counter_key(client, rate_class, caller, rate, period)
        script = _count_script(redis)
        # EVALSHA, not the script object: redis-py would check that the script exists first, in
        # a round trip of its own. A server that lost it (restarted) gets it loaded and run again.
        commands = [
            ("GET", client.make_key(read)),
            ("EVALSHA", script.sha, 1, key, period + EXPIRATION_FUDGE),
        ]
        direct = direct_redis(redis)
        raw, count = (
            direct.round_trip(commands) if direct is not None else _round_trip(redis, commands)
        )
        if isinstance(count, NoScriptError):
            count = script(keys=[key], args=[period + EXPIRATION_FUDGE])
        if isinstance(raw, Exception) or isinstance(count, Exception):
            return None
        entry = None if raw is None else api_key_entry(raw, client.decode)
        counted = CountedAhead(caller, rate, int(count), window - int(time.time()))
    except Exception:
        return None
    return counted, entry


def rate_consume(
    *,
    request: Any,
    api_key: ApiKey | None,
    rate_class: str,
    counted: CountedAhead | None = None,
) -> RateState | None:
    """Count one request against the caller's class budget; None when the limiter is unavailable.

    `counted`: this request counted already (`rate_count_ahead`), used if it counted this caller
    at this rate; otherwise it is counted now.
    """
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    rate = rate_for(api_key, rate_class)
    limit, window = _split_rate(rate)
    if api_key is not None:
        caller = _caller(api_key.id)
    else:
        caller = f"anon:{request.META.get('REMOTE_ADDR', '')}"
    if counted is not None and counted.caller == caller and counted.rate == rate:
        return _state(rate_class, limit, window, counted.count, counted.time_left)
    try:
        usage = _redis_usage(
            rate_class=rate_class, caller=caller, rate=rate, limit=limit, period=window
        )
        if usage is None:
            usage = get_usage(
                request,
                group=f"neuronx:{rate_class}",
                key=lambda group, req: caller,
                rate=rate,
                increment=True,
            )
    except Exception:
        logger.warning("rate limiter unavailable; failing open", exc_info=True)
        return None
    if usage is None or usage["time_left"] < 0:
        return None
    return _state(rate_class, limit, window, int(usage["count"]), int(usage["time_left"]))


def _state(rate_class: str, limit: int, window: int, count: int, time_left: int) -> RateState:
    return RateState(
        rate_class=rate_class,
        limit=limit,
        window=window,
        remaining=max(limit - count, 0),
        reset=max(time_left, 0),
        exceeded=count > limit,
    )


def _redis_usage(
    *, rate_class: str, caller: str, rate: str, limit: int, period: int
) -> dict[str, Any] | None:
    """`get_usage(..., increment=True)` in one round trip on a django-redis cache; None on any
    other cache (the per-process development cache), which `get_usage` then counts."""
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    if not isinstance(cache, RedisCache):
        return None
    client = cache.client
    key, window = _counter_key(client, rate_class, caller, rate, period)
    script = _count_script(client.get_client(write=True))
    count = int(script(keys=[key], args=[period + EXPIRATION_FUDGE]))
    return {
        "count": count,
        "limit": limit,
        "should_limit": count > limit,
        "time_left": window - int(time.time()),
    }


def _round_trip(redis: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """The raw replies to `commands`, sent together on one of the client's pooled connections
    (a reply that is an error is returned, not raised), where `direct_redis` has no connection
    of that kind (TLS). What a redis-py pipeline does, without the machinery around it (its
    retries, hooks and reply callbacks), which costs this hot path more than the round trip."""
    pool = redis.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except ResponseError as error:
                replies.append(error)
    except BaseException:
        connection.disconnect()  # a half-read connection must not go back to the pool as is
        raise
    finally:
        pool.release(connection)
    return replies


def _counter_key(
    client: Any, rate_class: str, caller: str, rate: str, period: int
) -> tuple[str, int]:
    """django-ratelimit's counter of `caller` for the current window, and the window's end."""
    window = _get_window(caller, period)
    memo = (client, rate_class, caller, rate, window)
    key = _COUNTER_KEYS.get(memo)
    if key is None:
        if len(_COUNTER_KEYS) >= 4096:  # windows gone by, and callers seen once
            _COUNTER_KEYS.clear()
        key = _COUNTER_KEYS[memo] = client.make_key(
            _make_cache_key(f"neuronx:{rate_class}", window, rate, caller, ALL)
        )
    return key, window


# The counter keys of the current windows: each is a hash (django-ratelimit's), made once.
_COUNTER_KEYS: dict[tuple[Any, str, str, str, int], str] = {}


_scripts: dict[int, Any] = {}


def _count_script(redis: Any) -> Any:
    """The script registered on this Redis client (sent by its SHA; loaded again if missing)."""
    script = _scripts.get(id(redis))
    if script is None or script.registered_client is not redis:
        script = _scripts[id(redis)] = redis.register_script(_COUNT_SCRIPT)
    return script
