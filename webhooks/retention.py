"""How long the delivery log and the outbox are kept.

A finished delivery (succeeded, failed, canceled or skipped) is deleted with its attempts
WEBHOOK_LOG_RETENTION_DAYS after it finished; an event once it was dispatched that long ago and
no delivery of it is left. Nothing pending is ever deleted: an undispatched event, a delivery
still being retried, or one redelivered since, stays until it finishes and its own period ends.
Event payloads carry the leads' contact details, so they are not kept longer than the log that
explains them.
"""

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from webhooks.models import Delivery, DeliveryStatus, Event

# Deliveries (with their attempts) or events deleted per transaction, so a large backlog never
# holds many locks for long; and how long one run may go on before leaving the rest to the
# next, so that a first run on a large log does not keep a worker from deliveries for long.
PURGE_BATCH = 1000
PURGE_SECONDS = 300.0


def webhook_log_purge(
    *, now: datetime | None = None, batch: int = PURGE_BATCH, seconds: float = PURGE_SECONDS
) -> dict[str, int]:
    """Delete what is past its retention (celery beat, hourly); returns how many deliveries and
    events went. Safe beside live traffic and beside another purge: a delivery is taken under
    its row lock and one locked elsewhere is left for the next run, so a redelivery that
    reaches a delivery first keeps it (it is pending again) and one that comes after finds it
    gone (404). Whoever deletes deliveries and their attempts locks the deliveries first
    (`subscription_delete` too), so two deletions never wait for each other in a circle."""
    assert batch > 0
    days = settings.WEBHOOK_LOG_RETENTION_DAYS
    if days <= 0:
        return {"deliveries": 0, "events": 0}
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deadline = time.monotonic() + seconds
    return {
        "deliveries": _in_batches(_deliveries_purge, cutoff=cutoff, batch=batch, until=deadline),
        "events": _in_batches(_events_purge, cutoff=cutoff, batch=batch, until=deadline),
    }


def _in_batches(purge: Callable[..., int], *, cutoff: datetime, batch: int, until: float) -> int:
    total = 0
    while True:
        deleted = purge(cutoff=cutoff, batch=batch)
        total += deleted
        if deleted < batch or time.monotonic() >= until:
            return total


@transaction.atomic
def _deliveries_purge(*, cutoff: datetime, batch: int) -> int:
    ids = list(
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(finished_at__lt=cutoff)
        .exclude(status=DeliveryStatus.PENDING)
        .values_list("id", flat=True)[:batch]
    )
    if ids:
        Delivery.objects.filter(pk__in=ids).only("pk").delete()  # and their attempts
    return len(ids)


@transaction.atomic
def _events_purge(*, cutoff: datetime, batch: int) -> int:
    # `dispatched_at` (indexed) rather than `created_at`: an event is dispatched after it is made.
    ids = list(
        Event.objects.select_for_update(skip_locked=True)
        .filter(dispatched_at__lt=cutoff)
        .filter(~Exists(Delivery.objects.filter(event_id=OuterRef("pk"))))
        .values_list("id", flat=True)[:batch]
    )
    if ids:
        Event.objects.filter(pk__in=ids).only("pk").delete()  # not their payloads
    return len(ids)
