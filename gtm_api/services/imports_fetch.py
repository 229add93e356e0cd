"""Fetching an import's `source_url` into storage, with the webhooks' SSRF protection.

Every connection, redirects included, goes through `webhooks.targets.PinnedTransport`: the URL
must be `https` (unless WEBHOOK_ALLOW_PRIVATE_TARGETS, for development and tests), and every
address its host resolves to must be public; the connection is made to the address that was
checked. The body is streamed to a temporary file and counted as it arrives, so a source larger
than LEAD_IMPORT_MAX_FILE_BYTES, or slower than LEAD_IMPORT_FETCH_TIMEOUT_SECONDS, is cut off
without being held in memory.
"""

import ipaddress
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from gtm_api.services.imports_reader import FileRejected, format_detect
from webhooks.targets import PinnedTransport, TargetForbidden, target_addresses, target_parse

MAX_REDIRECTS = 3
READ_TIMEOUT_SECONDS = 10.0
USER_AGENT = "NeuronX-Imports/1.0"
_CHUNK = 262_144


@dataclass(frozen=True)
class Fetched:
    name: str
    size: int
    format: str


def source_url_check(url: str) -> None:
    """At submission: the URL is well formed and allowed, and a literal address is public.

    Host names are resolved (and checked) when the file is fetched.
    """
    target = target_parse(url)
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        return
    target_addresses(target)


def source_fetch(
    *, url: str, storage_name: str, fmt: str, on_progress: Callable[[], None]
) -> Fetched:
    """Download `url` into the default storage as `storage_name`.

    Raises `FileRejected` with `source_forbidden`, `source_unreachable`, `source_timeout` or
    `source_too_large`. `on_progress` is called every few seconds (the caller renews its lease).
    """
    limit = settings.LEAD_IMPORT_MAX_FILE_BYTES
    total = float(settings.LEAD_IMPORT_FETCH_TIMEOUT_SECONDS)
    deadline = time.monotonic() + total
    try:
        with (
            tempfile.TemporaryFile() as spool,
            httpx.Client(
                transport=PinnedTransport(),
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=httpx.Timeout(min(READ_TIMEOUT_SECONDS, total)),
            ) as client,
            client.stream(
                "GET",
                url,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "text/csv, application/x-ndjson;q=0.9, */*;q=0.5",
                },
            ) as response,
        ):
            if response.status_code != 200:
                raise FileRejected(
                    "source_unreachable",
                    f"The source answered HTTP {response.status_code} (expected 200).",
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            size = 0
            head = b""
            last_progress = time.monotonic()
            # Decoded bytes are counted, so a compressed body cannot expand past the limit.
            for chunk in response.iter_bytes(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                if len(head) < 4096:
                    head += chunk[: 4096 - len(head)]
                spool.write(chunk)
                now = time.monotonic()
                if now > deadline:
                    raise FileRejected(
                        "source_timeout",
                        "The source took longer than "
                        f"{settings.LEAD_IMPORT_FETCH_TIMEOUT_SECONDS} seconds to download.",
                    )
                if now - last_progress > 5:
                    on_progress()
                    last_progress = now
            detected = fmt or format_detect(
                name=urlsplit(str(response.url)).path,
                content_type=response.headers.get("content-type", ""),
                head=head,
            )
            spool.seek(0)
            name = default_storage.save(storage_name, File(spool))
            return Fetched(name=name, size=size, format=detected)
    except TargetForbidden as exc:
        raise FileRejected(
            "source_forbidden", f"The source URL is not allowed: {exc.message}"
        ) from None
    except httpx.TooManyRedirects:
        raise FileRejected(
            "source_unreachable", f"The source redirected more than {MAX_REDIRECTS} times."
        ) from None
    except httpx.TimeoutException:
        raise FileRejected(
            "source_timeout",
            f"The source did not answer within {min(READ_TIMEOUT_SECONDS, total):.0f} seconds.",
        ) from None
    except httpx.HTTPError as exc:
        raise FileRejected(
            "source_unreachable", f"The source could not be fetched: {exc}."
        ) from None


def _too_large(limit: int) -> FileRejected:
    return FileRejected("source_too_large", f"The source is larger than {limit} bytes.")
