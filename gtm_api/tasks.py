from celery import shared_task

from gtm_api.services.payments import payments_expire_stale


@shared_task(name="gtm_api.tasks.payments_expire")
def payments_expire() -> int:
    """Expire unpaid checkouts (celery beat, every 5 minutes)."""
    return payments_expire_stale()
