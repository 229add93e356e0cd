"""Sending one webhook request: an SSRF-pinned POST with a timeout, never following redirects,
its outcome (status, latency, the first KiB of the response, the error) for the delivery log."""

import email.utils
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from webhooks.targets import PinnedTransport, TargetForbidden, target_parse

logger = logging.getLogger("webhooks.delivery")

EXCERPT_BYTES = 1024
# Parallel requests per batch, and pooled clients per process (one per scheme, host and port).
SEND_THREADS = 8
MAX_CLIENTS = 128


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    latency_ms: int | None = None
    excerpt: str = ""
    error: str = ""
    retry_after: int | None = None
    # No retry whatever the schedule says (the payload can never be sent).
    final: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after_seconds(value: str | None, *, now: datetime) -> int | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0, int((moment - now).total_seconds()))


_clients: dict[tuple[str, str, int], httpx.Client] = {}
_clients_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _client(url: str) -> httpx.Client:
    """A pooled client per origin *name*: kept-alive connections are only ever reused for the
    host name they were opened (and TLS-verified) for, and every request is pinned afresh."""
    target = target_parse(url)
    key = (target.scheme, target.host, target.port)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if len(_clients) >= MAX_CLIENTS:
                # Dropped, not closed: another thread may be mid-request on it.
                _clients.pop(next(iter(_clients)))
            client = httpx.Client(
                transport=PinnedTransport(), follow_redirects=False, trust_env=False
            )
            _clients[key] = client
    return client


def send(*, url: str, body: bytes, headers: dict[str, str], now: datetime) -> Outcome:
    """POST `body` once; never follows redirects, never raises for what the receiver does."""
    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        client = _client(url)
        with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            latency = elapsed()
            excerpt = b""
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES or time.monotonic() - started > timeout:
                    break
    except TargetForbidden as exc:
        return Outcome(error=f"Refused to connect: {exc.message}")
    except httpx.TimeoutException:
        return Outcome(latency_ms=elapsed(), error=f"Timed out after {timeout:g} s.")
    except httpx.HTTPError as exc:
        return Outcome(latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    except Exception as exc:
        # A fault of ours must not lose the other attempts of the batch: log it, retry later.
        logger.exception("webhook send failed", extra={"host": urlsplit(url).hostname})
        return Outcome(latency_ms=elapsed(), error=f"Internal error ({type(exc).__name__}).")
    text = excerpt[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    code = response.status_code
    error = ""
    if 300 <= code < 400:
        location = response.headers.get("location", "")[:200]
        error = f"Redirect ({code}) to {location!r} not followed: register the final URL."
    elif not 200 <= code < 300:
        error = f"HTTP {code}: only a 2xx status counts as delivered."
    return Outcome(
        status_code=code,
        latency_ms=latency,
        excerpt=text,
        error=error,
        retry_after=None
        if 200 <= code < 300
        else retry_after_seconds(response.headers.get("retry-after"), now=now),
    )


def send_all(requests: list[tuple[str, bytes, dict[str, str]]], now: datetime) -> list[Outcome]:
    global _executor
    if len(requests) == 1:
        url, body, headers = requests[0]
        return [send(url=url, body=body, headers=headers, now=now)]
    with _clients_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="webhook-send")
        executor = _executor
    return list(executor.map(lambda r: send(url=r[0], body=r[1], headers=r[2], now=now), requests))
