"""Celery tasks of the webhook pipeline. They take ids and call services; the database, not
the broker, is the source of truth, so a lost message only delays a delivery until the sweep."""

import logging
import time
from collections.abc import Sequence

from celery import current_app, shared_task
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache

from neuronx.redis_direct import cache_add
from webhooks import delivery, dispatch, retention

logger = logging.getLogger("webhooks.tasks")

# Events fanned out per transaction of a dispatch task, and how long one task keeps draining.
DISPATCH_DRAIN = 200
DISPATCH_BUDGET_SECONDS = 10.0
# While this cache key exists a dispatch task is queued that will see every committed event,
# so publishers need not queue another: one task fans out a whole burst.
DISPATCH_QUEUED_KEY = "webhooks:dispatch-queued"
DISPATCH_QUEUED_SECONDS = 30


@shared_task(name="webhooks.tasks.events_dispatch")
def events_dispatch(event_ids: list[str]) -> int:
    """Fan committed events out into deliveries: these, then any other undispatched ones."""
    if _coalescing():
        # Before reading the outbox: an event committed from now on queues a new task.
        cache.delete(DISPATCH_QUEUED_KEY)
    started, deliveries = time.monotonic(), 0
    while True:
        done = dispatch.events_dispatch(
            event_ids=event_ids, drain=max(0, DISPATCH_DRAIN - len(event_ids))
        )
        deliveries += len(done.delivery_ids)
        event_ids = []
        if done.events < DISPATCH_DRAIN:
            return deliveries
        if time.monotonic() - started > DISPATCH_BUDGET_SECONDS:
            dispatch_enqueue([])  # more to do: let another task (or process) carry on
            return deliveries


@shared_task(name="webhooks.tasks.deliveries_attempt")
def deliveries_attempt(delivery_ids: list[str]) -> int:
    """Make the due attempts of these deliveries; returns how many were made."""
    return len(delivery.deliveries_attempt(delivery_ids=delivery_ids))


@shared_task(name="webhooks.tasks.outbox_sweep")
def outbox_sweep() -> dict[str, int]:
    """Dispatch and enqueue whatever an enqueue missed (celery beat, every minute)."""
    return dispatch.outbox_sweep()


@shared_task(name="webhooks.tasks.log_purge")
def log_purge() -> dict[str, int]:
    """Delete deliveries and events past WEBHOOK_LOG_RETENTION_DAYS (celery beat, hourly)."""
    return retention.webhook_log_purge()


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


def _coalescing() -> bool:
    """Only a cache every process shares (Redis) can say a dispatch task is already queued."""
    return not _eager() and str(settings.CACHES["default"]["BACKEND"]).endswith("RedisCache")


def _batches(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


def dispatch_enqueue(event_ids: Sequence[str]) -> None:
    """Hand committed events to a dispatch task (called after commit)."""
    batches: list[list[str]]
    if _coalescing():
        try:
            if not cache_add(
                DEFAULT_CACHE_ALIAS, DISPATCH_QUEUED_KEY, 1, timeout=DISPATCH_QUEUED_SECONDS
            ):
                return  # a queued task has not started reading yet: it will see these
            batches = [[]]
        except Exception:
            batches = _batches(event_ids, DISPATCH_DRAIN)  # no cache: queue them explicitly
    else:
        batches = _batches(event_ids, DISPATCH_DRAIN) or [[]]
    for batch in batches:
        try:
            events_dispatch.delay(batch)
        except Exception:
            # The broker is down: the events are committed and the sweep will dispatch them.
            logger.warning("event dispatch not enqueued", extra={"event_ids": batch}, exc_info=True)


def attempts_enqueue(delivery_ids: Sequence[str]) -> None:
    for batch in _batches(delivery_ids, settings.WEBHOOK_DELIVERY_BATCH):
        _enqueue(batch, countdown=None)


def attempt_enqueue(delivery_id: str, *, countdown: float | None = None) -> None:
    if countdown and _eager():
        # In-process tasks cannot wait; the sweep sends the retry when it is due.
        return
    _enqueue([delivery_id], countdown=countdown)


def _enqueue(delivery_ids: list[str], *, countdown: float | None) -> None:
    try:
        if countdown:
            deliveries_attempt.apply_async((delivery_ids,), countdown=countdown)
        else:
            deliveries_attempt.delay(delivery_ids)
    except Exception:
        # Not enqueued (or, in-process, failed): the sweep retries them once overdue.
        logger.warning(
            "delivery attempts not enqueued", extra={"delivery_ids": delivery_ids}, exc_info=True
        )
