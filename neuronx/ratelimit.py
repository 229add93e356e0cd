"""Rate-limit classes counted per API key on the shared cache (django-ratelimit).

Headers follow the IETF httpapi RateLimit draft: `RateLimit-Policy: "write";q=300;w=60` and
`RateLimit: "write";r=297;t=42`. When the cache is unreachable the limiter fails open and logs a
warning: an outage of the counter must not become an outage of the API.
"""

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_ratelimit.core import _split_rate, get_usage

from neuronx.models import ApiKey

logger = logging.getLogger("neuronx.ratelimit")


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
    rate = rate_for(api_key, rate_class)
    limit, window = _split_rate(rate)
    if api_key is not None:
        caller = f"key:{api_key.id}"
    else:
        caller = f"anon:{request.META.get('REMOTE_ADDR', '')}"
    try:
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
