"""Bulk lead imports: submission, the chunked processing a Celery worker runs, and its end.

A job moves `queued → processing → completed | completed_with_errors | failed`. Its file is kept
in the default storage. Processing reads the file once to count (and structurally check) its rows
and index its parts, then validates rows in plain Python with `lead_row_validate` — the code
single create runs — in parallel for a large file (`imports_validation`), and writes them a
chunk at a time (`imports_writer`). Each chunk commits its leads, consents, row
errors and counts in one transaction, so a worker that dies loses at most the chunk in flight;
the next worker to take the job (Celery redelivers it; `lead_imports_recover` re-enqueues jobs
whose lease expired) replays validation up to the last committed row and continues from there,
writing nothing twice.
"""

import gc
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.db.models.lookups import Exact
from django.utils import timezone

from gtm_api.import_serializers import LeadImportOutput
from gtm_api.lead_fields import FieldError
from gtm_api.models import ACTIVE_IMPORT_STATUSES, ImportSource, ImportStatus, Lead, LeadImport
from gtm_api.services.imports_fetch import source_fetch, source_url_check
from gtm_api.services.imports_reader import (
    FileIndex,
    FileRejected,
    format_detect,
    header_check,
    records_index,
    stored_file_open,
)
from gtm_api.services.imports_validation import file_validated
from gtm_api.services.imports_writer import ValidRow, WriteState, chunk_write, errors_write
from neuronx import errors
from neuronx.context import Actor
from neuronx.models import Tenant
from usage.services import usage_record
from webhooks.services import event_publish
from webhooks.targets import TargetForbidden

logger = logging.getLogger("gtm_api.imports")

RETRY_AFTER_SECONDS = 30
MAX_CHUNK_ATTEMPTS = 5
# Fewer created leads than this never make the leads table's statistics stale enough to matter.
ANALYZE_MIN_ROWS = 10_000


class LeaseLost(Exception):
    """Another worker has taken the job over (ours was presumed dead); stop without writing."""


# -- submission ---------------------------------------------------------------------------------


@transaction.atomic
def lead_import_submit(
    *,
    actor: Actor,
    mode: str,
    dry_run: bool,
    file: UploadedFile | None = None,
    source_url: str | None = None,
    leads: list[Any] | None = None,
    format: str | None = None,
) -> LeadImport:
    """Accept an import of an uploaded file, a `source_url` or inline `leads`; queue it.

    Checks what can be checked at once — the tenant's concurrent imports (`too_many_imports`),
    the file's size (`payload_too_large`), encoding and CSV header, the URL (`validation_error`)
    — stores the file and enqueues processing after commit. Consent: none. Usage and the
    `lead_import.completed` event are written when the job ends.
    """
    _concurrency_check(actor.tenant)
    job = LeadImport(
        tenant=actor.tenant,
        api_key=actor.api_key,
        request_id=actor.request_id,
        mode=mode,
        dry_run=dry_run,
        format=format or "",
    )
    if file is not None:
        job.source = ImportSource.UPLOAD
        _store_upload(job, file)
    elif leads is not None:
        job.source = ImportSource.INLINE
        job.format = "ndjson"
        content = "".join(json.dumps(lead, ensure_ascii=False) + "\n" for lead in leads)
        _store(job, ContentFile(content.encode()))
    else:
        assert source_url is not None
        job.source = ImportSource.URL
        job.source_url = source_url
        try:
            source_url_check(source_url)
        except TargetForbidden as exc:
            raise errors.ValidationFailed(
                [{"field": "source_url", "code": exc.code, "message": exc.message}]
            ) from None
    job.save()
    transaction.on_commit(lambda: _enqueue(job.id), robust=True)
    return job


def _concurrency_check(tenant: Tenant) -> None:
    # The tenant row lock serialises the submissions of one tenant, so two concurrent requests
    # cannot both take the last free slot.
    Tenant.objects.select_for_update().filter(pk=tenant.pk).exists()
    active = LeadImport.objects.filter(tenant=tenant, status__in=ACTIVE_IMPORT_STATUSES).count()
    limit = settings.LEAD_IMPORT_MAX_CONCURRENT
    if active >= limit:
        exc = errors.TooManyImports(
            f"The tenant already has {active} imports queued or processing (the limit is "
            f"{limit}); retry when one has finished.",
            retry_after=RETRY_AFTER_SECONDS,
        )
        exc.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        raise exc


def _store_upload(job: LeadImport, file: UploadedFile) -> None:
    limit = settings.LEAD_IMPORT_MAX_FILE_BYTES
    if file.size is not None and file.size > limit:
        raise errors.PayloadTooLarge(f"The file is larger than the limit of {limit} bytes.")
    job.file_name = (file.name or "")[:255]
    head = file.read(4096)
    file.seek(0)
    job.format = job.format or format_detect(
        name=job.file_name, content_type=file.content_type or "", head=head
    )
    try:
        header_check(file, fmt=job.format)
    except FileRejected as exc:
        raise errors.ValidationFailed(
            [{"field": "file", "code": exc.code, "message": exc.message}],
            detail=f"The file cannot be imported: {exc.message}",
        ) from None
    _store(job, file)


def _store(job: LeadImport, content: Any) -> None:
    extension = "csv" if job.format == "csv" else "ndjson"
    job.file.name = default_storage.save(
        f"lead-imports/{job.tenant_id}/{job.id}.{extension}", content
    )
    job.size_bytes = content.size


def _enqueue(import_id: str) -> None:
    from gtm_api.tasks import lead_import_process

    try:
        lead_import_process.delay(import_id)
    except Exception:
        # The broker is down: the job is committed as `queued`, and `lead_imports_recover`
        # (celery beat) enqueues it again once the broker is back.
        logger.warning("lead import not enqueued", extra={"import_id": import_id}, exc_info=True)


# -- processing ---------------------------------------------------------------------------------


def lead_import_run(*, import_id: str) -> str:
    """Process the import, or resume it after its last committed chunk.

    Returns `done` (finished now or before), `busy` (another worker holds a live lease) or
    `lost` (another worker took the job over while we ran). Row problems become row errors and
    problems with the file a `failed` job; only database outages raise (the task retries).
    """
    try:
        token = _lease_take(import_id)
    except _Busy:
        return "busy"
    if token is None:
        return "done"
    try:
        _run(import_id, token)
    except LeaseLost:
        logger.warning("lead import %s was taken over by another worker", import_id)
        return "lost"
    return "done"


class _Busy(Exception):
    """Another worker's lease on the job is live."""


def _lease_take(import_id: str) -> str | None:
    """A new lease on the job, or None when it is finished (or gone). Raises `_Busy`."""
    with transaction.atomic():
        job = LeadImport.objects.select_for_update().filter(pk=import_id).first()
        if job is None or job.is_finished:
            return None
        now = timezone.now()
        if job.lease_token and job.lease_expires_at and job.lease_expires_at > now:
            raise _Busy(import_id)
        job.lease_token = secrets.token_hex(16)
        job.lease_expires_at = _lease_end()
        job.status = ImportStatus.PROCESSING
        job.started_at = job.started_at or now
        job.attempts += 1
        job.save(
            update_fields=[
                "lease_token",
                "lease_expires_at",
                "status",
                "started_at",
                "attempts",
                "updated_at",
            ]
        )
        return job.lease_token


def _lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=settings.LEAD_IMPORT_LEASE_SECONDS)


def _locked(import_id: str, token: str) -> LeadImport:
    """The job, locked for this transaction, if we still hold its lease (which is renewed)."""
    job = LeadImport.objects.select_for_update().get(pk=import_id)
    if job.lease_token != token:
        raise LeaseLost(import_id)
    job.lease_expires_at = _lease_end()
    return job


def _job_update(import_id: str, token: str, **fields: Any) -> None:
    """Set fields of the job we hold (none: only renew the lease)."""
    with transaction.atomic():
        job = _locked(import_id, token)
        for name, value in fields.items():
            setattr(job, name, value)
        job.save(update_fields=[*fields, "lease_expires_at", "updated_at"])


def _run(import_id: str, token: str) -> None:
    job = LeadImport.objects.select_related("tenant", "api_key").get(pk=import_id)
    actor = Actor(
        tenant=job.tenant, api_key=job.api_key, request_id=job.request_id, internal="lead_import"
    )
    try:
        if not job.file and job.source != ImportSource.URL:
            raise FileRejected(
                "file_missing", "The import's file is no longer stored; submit it again."
            )
        if not job.file:
            fetched = source_fetch(
                url=job.source_url,
                storage_name=f"lead-imports/{job.tenant_id}/{job.id}.download",
                fmt=job.format,
                on_progress=lambda: _job_update(import_id, token),
            )
            job.file.name, job.size_bytes, job.format = fetched.name, fetched.size, fetched.format
            _job_update(
                import_id, token, file=job.file.name, size_bytes=job.size_bytes, format=job.format
            )
        with stored_file_open(job.file) as stream:
            index = records_index(
                stream,
                fmt=job.format,
                limit=settings.LEAD_IMPORT_MAX_ROWS,
                span=settings.LEAD_IMPORT_CHUNK_ROWS,
            )
        if job.received == 0:
            job.received = index.rows
            _job_update(import_id, token, received=job.received)
        _process(job, actor, token, lambda: stored_file_open(job.file), index)
    except FileRejected as exc:
        _finish(import_id, token, actor, error=(exc.code, exc.message))
        return
    except (LeaseLost, OperationalError, InterfaceError):
        raise
    except Exception:
        logger.exception("lead import %s failed", import_id)
        _finish(
            import_id,
            token,
            actor,
            error=(
                "internal_error",
                "An unexpected error stopped the import; rows reported as processed were "
                "imported. Quote the import id to support.",
            ),
        )
        return
    _finish(import_id, token, actor)


@dataclass
class _Chunk:
    valid: list[ValidRow] = field(default_factory=list)
    failed: list[tuple[int, FieldError]] = field(default_factory=list)
    failed_rows: int = 0
    rows: int = 0


def _process(
    job: LeadImport,
    actor: Actor,
    token: str,
    open_file: Callable[[], IO[bytes]],
    index: FileIndex,
) -> None:
    committed = job.processed
    state = WriteState(match=job.mode == "upsert" or job.dry_run)
    with _serial_queries(), _collector_paused():
        _chunks_commit(job, actor, token, open_file, index, committed, state)
    if not job.dry_run:
        _statistics_refresh(job.id)


def _statistics_refresh(import_id: str) -> None:
    """ANALYZE the leads table when the import created a tenth of its rows or more, as
    autovacuum would, later: the lookups of the next import (an upsert of the same file, say)
    are then planned for the table as it is, not as it was before this one. Only the columns
    those lookups read are sampled (a third of the time of all)."""
    if connection.vendor != "postgresql":
        return
    created = LeadImport.objects.filter(pk=import_id).values_list("created", flat=True).get()
    if created < ANALYZE_MIN_ROWS:
        return
    table = connection.ops.quote_name(Lead._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        (known,) = cursor.fetchone()
        if created >= 0.1 * max(known, 0):  # never analysed: -1
            cursor.execute(f"ANALYZE {table} (id, tenant_id, external_id, email, stage)")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the chunks are written.

    The worker makes millions of short-lived objects, none of them in reference cycles, which
    reference counting frees; the collector would still traverse them, and everything the
    worker had before (Django, the apps), thousands of times: over a second per 200 000 rows.
    It runs again when the import ends, on whatever garbage the import left.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _serial_queries() -> Iterator[None]:
    """No parallel query workers for the chunk lookups: thousands of index probes are cheaper
    without them, and they would take CPU from the import itself."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET max_parallel_workers_per_gather = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET max_parallel_workers_per_gather")


def _chunks_commit(
    job: LeadImport,
    actor: Actor,
    token: str,
    open_file: Callable[[], IO[bytes]],
    index: FileIndex,
    committed: int,
    state: WriteState,
) -> None:
    chunk_rows = settings.LEAD_IMPORT_CHUNK_ROWS
    chunk = _Chunk()
    # Closed on the way out, whatever happens: that stops the validating processes at once.
    with closing(file_validated(open_file, fmt=job.format, index=index)) as parts:
        for part in parts:
            for number, outcome in part:
                if number <= committed:
                    continue  # committed by an earlier run: validated again only for its keys
                chunk.rows += 1
                if isinstance(outcome, ValidRow):
                    chunk.valid.append(outcome)
                else:
                    chunk.failed_rows += 1
                    chunk.failed.extend((number, error) for error in outcome)
                if chunk.rows == chunk_rows:
                    committed = _chunk_commit(job, actor, token, committed, chunk, state)
                    chunk = _Chunk()
    if chunk.rows:
        _chunk_commit(job, actor, token, committed, chunk, state)


def _chunk_commit(
    job: LeadImport, actor: Actor, token: str, committed: int, chunk: _Chunk, state: WriteState
) -> int:
    """Write one chunk and advance the job's counts in one transaction; returns the new cursor.

    The counts move only if the job is still ours and still at `committed` (one conditional
    UPDATE, which waits for a concurrent writer of the same job and then finds it changed):
    otherwise everything the chunk wrote is rolled back. A lead written concurrently by someone
    else makes a COPY fail on a unique index; the chunk is then planned and written again.
    """
    for attempt in range(1, MAX_CHUNK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                result = chunk_write(
                    actor=actor,
                    rows=chunk.valid,
                    upsert=job.mode == "upsert",
                    dry_run=job.dry_run,
                    now=timezone.now(),
                    state=state,
                )
                errors = sorted([*chunk.failed, *result.errors], key=_row)
                errors_write(job_id=job.id, errors=errors)
                failed = chunk.failed_rows + len({number for number, _ in result.errors})
                advanced = (
                    LeadImport.objects.filter(pk=job.id, lease_token=token)
                    .filter(Exact(F("created") + F("updated") + F("failed"), committed))
                    .update(
                        created=F("created") + result.created,
                        updated=F("updated") + result.updated,
                        failed=F("failed") + failed,
                        lease_expires_at=_lease_end(),
                        updated_at=timezone.now(),
                    )
                )
                if not advanced:
                    raise LeaseLost(job.id)  # someone else took the job over
                return committed + chunk.rows
        except IntegrityError:
            if attempt == MAX_CHUNK_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _row(item: tuple[int, FieldError]) -> int:
    return item[0]


def _finish(
    import_id: str, token: str, actor: Actor, *, error: tuple[str, str] | None = None
) -> None:
    """End the job: its status, one `lead.ingested` usage event with the created quantity (none
    for a dry run) and one `lead_import.completed` event, in one transaction."""
    with transaction.atomic():
        job = _locked(import_id, token)
        if error is not None:
            job.status = ImportStatus.FAILED
            job.error_code, job.error_message = error
        elif job.failed:
            job.status = ImportStatus.COMPLETED_WITH_ERRORS
        else:
            job.status = ImportStatus.COMPLETED
        job.finished_at = timezone.now()
        job.lease_token = ""
        job.lease_expires_at = None
        job.save()
        if not job.dry_run:
            usage_record(actor=actor, dimension="lead.ingested", quantity=job.created)
        event_publish(
            actor=actor, type="lead_import.completed", data={"import": LeadImportOutput(job).data}
        )


# -- upkeep (celery beat) -----------------------------------------------------------------------


def lead_imports_recover() -> list[str]:
    """Re-enqueue imports that nobody is working on: a lease expired (its worker died) or a job
    still queued after a lease period (its message was lost). Returns their ids."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.LEAD_IMPORT_LEASE_SECONDS)
    stalled = list(
        LeadImport.objects.filter(
            status=ImportStatus.PROCESSING, lease_expires_at__lt=now
        ).values_list("id", flat=True)
    ) + list(
        LeadImport.objects.filter(
            status=ImportStatus.QUEUED, created_at__lt=grace, lease_token=""
        ).values_list("id", flat=True)
    )
    for import_id in stalled:
        _enqueue(import_id)
    return stalled


def lead_imports_purge() -> int:
    """Delete the files of imports finished more than LEAD_IMPORT_RETENTION_DAYS ago."""
    cutoff = timezone.now() - timedelta(days=settings.LEAD_IMPORT_RETENTION_DAYS)
    purged = 0
    for job in LeadImport.objects.filter(finished_at__lt=cutoff).exclude(file=""):
        job.file.delete(save=False)
        LeadImport.objects.filter(pk=job.pk).update(file="")
        purged += 1
    return purged
