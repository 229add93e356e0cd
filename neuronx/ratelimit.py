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

from neuronx.models import ApiKey

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
    if api_key is not None:
        override = api_key.tenant.rate_limits.get(rate_class)
        if override:
            return str(override)
    return str(settings.RATE_LIMITS[rate_class])


def rate_consume(*, request: Any, api_key: ApiKey | None, rate_class: str) -> RateState | None:
    """Count one request against the caller's class budget; None when the limiter is unavailable."""
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    rate = rate_for(api_key, rate_class)
    limit, window = _split_rate(rate)
    if api_key is not None:
        caller = f"key:{api_key.id}"
    else:
        caller = f"anon:{request.META.get('REMOTE_ADDR', '')}"
    try:
        usage = _redis_usage(
            group=f"neuronx:{rate_class}", caller=caller, rate=rate, limit=limit, period=window
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
    count = int(usage["count"])
    return RateState(
        rate_class=rate_class,
        limit=limit,
        window=window,
        remaining=max(limit - count, 0),
        reset=max(int(usage["time_left"]), 0),
        exceeded=bool(usage["should_limit"]),
    )


def _redis_usage(
    *, group: str, caller: str, rate: str, limit: int, period: int
) -> dict[str, Any] | None:
    """`get_usage(..., increment=True)` in one round trip on a django-redis cache; None on any
    other cache (the per-process development cache), which `get_usage` then counts."""
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    if not isinstance(cache, RedisCache):
        return None
    client = cache.client
    window = _get_window(caller, period)
    key = client.make_key(_make_cache_key(group, window, rate, caller, ALL))
    script = _count_script(client.get_client(write=True))
    count = int(script(keys=[key], args=[period + EXPIRATION_FUDGE]))
    return {
        "count": count,
        "limit": limit,
        "should_limit": count > limit,
        "time_left": window - int(time.time()),
    }


_scripts: dict[int, Any] = {}


def _count_script(redis: Any) -> Any:
    """The script registered on this Redis client (sent by its SHA; loaded again if missing)."""
    script = _scripts.get(id(redis))
    if script is None or script.registered_client is not redis:
        script = _scripts[id(redis)] = redis.register_script(_COUNT_SCRIPT)
    return script
