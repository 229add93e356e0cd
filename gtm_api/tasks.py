from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from gtm_api.services.imports import lead_import_run, lead_imports_purge, lead_imports_recover
from gtm_api.services.payments import payments_expire_stale


@shared_task(name="gtm_api.tasks.payments_expire")
def payments_expire() -> int:
    """Expire unpaid checkouts (celery beat, every 5 minutes)."""
    return payments_expire_stale()


@shared_task(
    bind=True,
    name="gtm_api.tasks.lead_import_process",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=12,
)
def lead_import_process(self: Any, import_id: str) -> str:
    """Process (or resume) one lead import. Safe to run twice: a lease lets one worker at a time
    write, and every chunk is committed with its cursor. While another worker's lease is live
    the task retries once the lease would have expired."""
    outcome = lead_import_run(import_id=import_id)
    if outcome == "busy" and not self.request.is_eager:
        raise self.retry(countdown=settings.LEAD_IMPORT_LEASE_SECONDS, max_retries=None)
    return outcome


@shared_task(name="gtm_api.tasks.lead_imports_recover")
def lead_imports_recover_task() -> int:
    """Re-enqueue imports whose worker died or whose message was lost (celery beat, every minute)."""
    return len(lead_imports_recover())


@shared_task(name="gtm_api.tasks.lead_imports_purge")
def lead_imports_purge_task() -> int:
    """Delete files of imports past their retention (celery beat, hourly)."""
    return lead_imports_purge()
