"""Reads of bulk lead imports, always scoped to the tenant."""

from collections.abc import Iterator

from django.db.models import QuerySet

from gtm_api.models import LeadImport, LeadImportRowError
from gtm_api.services.imports_reader import failed_rows_csv, stored_file_open
from neuronx import errors
from neuronx.models import Tenant


def lead_import_get(*, tenant: Tenant, import_id: str) -> LeadImport:
    """The tenant's import, or `not_found` (another tenant's is indistinguishable from none)."""
    job = LeadImport.objects.filter(tenant=tenant, pk=import_id).first()
    if job is None:
        raise errors.NotFound(f"No lead import {import_id!r}.")
    return job


def lead_import_list(*, tenant: Tenant, status: str | None = None) -> QuerySet[LeadImport]:
    jobs = LeadImport.objects.filter(tenant=tenant)
    if status is not None:
        jobs = jobs.filter(status=status)
    return jobs


def lead_import_errors(*, tenant: Tenant, import_id: str) -> QuerySet[LeadImportRowError]:
    """The row errors of the tenant's import, in row order (errors are written chunk by chunk)."""
    job = lead_import_get(tenant=tenant, import_id=import_id)
    return LeadImportRowError.objects.filter(job=job)


def _failures(job: LeadImport) -> Iterator[tuple[int, str]]:
    """`(row, "field (code): message; …")` per failed row, in row order, streamed."""
    rows = (
        LeadImportRowError.objects.filter(job=job)
        .order_by("row", "id")
        .values_list("row", "field", "code", "message")
        .iterator(chunk_size=2000)
    )
    current, parts = 0, list[str]()
    for row, field, code, message in rows:
        if row != current and parts:
            yield current, "; ".join(parts)
            parts = []
        current = row
        parts.append(f"{field} ({code}): {message}" if field else f"({code}) {message}")
    if parts:
        yield current, "; ".join(parts)


def lead_import_failed_rows(*, tenant: Tenant, import_id: str) -> tuple[LeadImport, Iterator[str]]:
    """The import and its failed rows as CSV text with an `error` column, streamed from its file.

    Raises `not_found` when the file is no longer kept (see LEAD_IMPORT_RETENTION_DAYS).
    """
    job = lead_import_get(tenant=tenant, import_id=import_id)
    if not job.file or not job.format:
        raise errors.NotFound(
            "This import has no file to take failed rows from (it was never fetched, or its "
            "retention period has ended)."
        )

    def stream() -> Iterator[str]:
        with stored_file_open(job.file) as source:
            yield from failed_rows_csv(source, fmt=job.format, failures=_failures(job))

    return job, stream()
