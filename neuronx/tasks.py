from celery import shared_task

from neuronx.idempotency import idempotency_purge


@shared_task(name="neuronx.tasks.idempotency_cleanup")
def idempotency_cleanup() -> int:
    """Drop idempotency records past their retention (run hourly by celery beat)."""
    return idempotency_purge()
