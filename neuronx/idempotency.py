"""Idempotency keys: claim, replay, complete and release, safe under concurrency.

A claim is a row unique on (tenant, key), inserted and committed before the action runs, so a
concurrent request with the same key sees it and answers `409 idempotency_key_in_use`. The
action and the stored outcome commit in one transaction (see `neuronx.views`), so a crash can
never leave an effect without its record. 5xx outcomes delete the claim so the client may retry.
"""

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.db import DatabaseError, connections, router
from django.http import HttpRequest
from django.utils import timezone

from neuronx import errors
from neuronx.fixed_sql import statement_cursor
from neuronx.inserts import insert_unless_conflict
from neuronx.models import IdempotencyRecord, Tenant

logger = logging.getLogger("neuronx.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Response headers worth replaying; the rest (rate limits, request id) describe the new request.
REPLAYED_RESPONSE_HEADERS = ("Location", "Content-Type", "Deprecation", "Sunset")


@dataclass(frozen=True)
class Replay:
    status: int
    body: str
    headers: dict[str, str]


def idempotency_key_parse(raw: str | None) -> str:
    if raw is None or raw == "":
        raise errors.IdempotencyKeyRequired(
            "This operation requires an `Idempotency-Key` header (1–255 printable ASCII characters)."
        )
    if not _VALID_KEY.match(raw):
        raise errors.IdempotencyKeyRequired(
            "`Idempotency-Key` must be 1–255 printable ASCII characters without spaces."
        )
    return raw


def request_fingerprint(*, method: str, path: str, body: bytes, content_type: str) -> str:
    """A hash of method, path and body; JSON bodies are compared by meaning, not by bytes."""
    canonical = body
    if content_type.startswith("application/json") and body:
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except (ValueError, UnicodeDecodeError):
            canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class DigestUploadHandler(FileUploadHandler):
    """Hashes every uploaded file while it streams in, for the fingerprint of a multipart request.

    Installed first, it passes each chunk on unchanged to Django's own handlers (memory or
    temporary file), so a large upload is neither read twice nor held in memory.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.digests: list[tuple[str, str, int, str]] = []
        self._sha = hashlib.sha256()

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._sha = hashlib.sha256()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._sha.update(raw_data)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        self.digests.append(
            (self.field_name or "", self.file_name or "", file_size, self._sha.hexdigest())
        )


def form_fingerprint_body(
    *, fields: Iterable[tuple[str, str]], files: Iterable[tuple[str, str, int, str]]
) -> bytes:
    """What a multipart request's fingerprint hashes: its fields, and each file's name and digest."""
    return json.dumps(
        {"fields": sorted(fields), "files": sorted(files)}, separators=(",", ":")
    ).encode()


def idempotency_claim(
    *, tenant: Tenant, key: str, fingerprint: str, method: str, path: str, request_id: str
) -> IdempotencyRecord | Replay:
    """Claim `key` for this request, or return the stored outcome to replay.

    Raises `IdempotencyKeyReused` for a different request and `IdempotencyKeyInUse` while the
    first request is still running.
    """
    _release_pending()
    for _ in range(3):
        now = timezone.now()
        # One statement, committed at once (the API claims outside any transaction): a claim
        # taken by another request inserts nothing and raises nothing.
        record = IdempotencyRecord(
            tenant=tenant,
            key=key,
            fingerprint=fingerprint,
            method=method,
            path=path,
            locked_at=now,
            request_id=request_id,
        )
        if insert_unless_conflict(record):
            return record
        existing = IdempotencyRecord.objects.filter(tenant=tenant, key=key).first()
        if existing is None:
            continue  # released between our insert and our read: try to claim again
        if existing.fingerprint != fingerprint:
            raise errors.IdempotencyKeyReused(
                "This Idempotency-Key was used with a different request "
                f"({existing.method} {existing.path}); use a new key for a new request."
            )
        if existing.state == IdempotencyRecord.State.COMPLETED:
            return Replay(
                status=existing.response_status or 200,
                body=existing.response_body,
                headers=dict(existing.response_headers),
            )
        stale = now - timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
        if existing.locked_at < stale:
            # The first request died without completing or releasing: take the claim over.
            taken = IdempotencyRecord.objects.filter(
                pk=existing.pk,
                state=IdempotencyRecord.State.IN_FLIGHT,
                locked_at=existing.locked_at,
            ).update(locked_at=now, request_id=request_id)
            if taken:
                existing.locked_at = now
                return existing
        raise errors.IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still in progress; retry shortly."
        )
    raise errors.IdempotencyKeyInUse("The Idempotency-Key is contended; retry shortly.")


def idempotency_complete(
    *, record: IdempotencyRecord, status: int, body: str, headers: dict[str, str]
) -> None:
    # Every write action's last statement: fixed SQL (prepared where statements are), where
    # `update()` would compile it and bind the response body into its text for every request.
    connection = connections[router.db_for_write(IdempotencyRecord)]
    quote = connection.ops.quote_name
    values = {
        "state": IdempotencyRecord.State.COMPLETED.value,
        "response_status": status,
        "response_body": body,
        "response_headers": headers,
    }
    fields = {field.name: field for field in IdempotencyRecord._meta.concrete_fields}
    assignments = ", ".join(f"{quote(str(fields[name].column))} = %s" for name in values)
    with statement_cursor(connection) as cursor:
        cursor.execute(
            f"UPDATE {quote(IdempotencyRecord._meta.db_table)} SET {assignments} "  # noqa: S608  (names are ours)
            f"WHERE {quote(str(fields['id'].column))} = %s",
            [
                *(
                    fields[name].get_db_prep_save(value, connection)
                    for name, value in values.items()
                ),
                record.pk,
            ],
        )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Drop the claim of a request that failed with a 5xx, so that a retry is processed as new.

    Only the request's own claim goes: not a completed one (the failure came after the commit),
    nor one another request has taken over since. If the database cannot be reached (the usual
    cause of the 5xx), the release is kept and made before this process's next claim, once the
    database answers again, rather than leaving the key in use for IDEMPOTENCY_LOCK_SECONDS.
    """
    try:
        _release(record.pk, record.locked_at)
    except DatabaseError:
        logger.warning("idempotency claim release deferred: database unavailable")
        with _unreleased_lock:
            _unreleased.append((record.pk, record.locked_at))


# Claims whose release failed for want of a database: (pk, locked_at), made by this process.
_unreleased: list[tuple[int, datetime]] = []
_unreleased_lock = threading.Lock()


def _release(pk: int, locked_at: datetime) -> None:
    IdempotencyRecord.objects.filter(
        pk=pk, state=IdempotencyRecord.State.IN_FLIGHT, locked_at=locked_at
    ).delete()


def _release_pending() -> None:
    with _unreleased_lock:
        pending = _unreleased[:]
        _unreleased.clear()
    for index, (pk, locked_at) in enumerate(pending):
        try:
            _release(pk, locked_at)
        except DatabaseError:
            with _unreleased_lock:
                _unreleased.extend(pending[index:])
            return


def idempotency_purge(*, older_than: timedelta | None = None) -> int:
    """Delete records past retention (24 h by default). Returns how many were removed."""
    retention = older_than or timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(
        created_at__lt=timezone.now() - retention
    ).delete()
    return deleted
