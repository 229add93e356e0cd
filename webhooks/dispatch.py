"""The outbox dispatcher and its sweep: every committed event reaches every subscription that
wants it, even when the enqueue after commit was lost."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webhooks.events import CATALOG
from webhooks.models import Delivery, DeliveryStatus, Event, WebhookSubscription


def _attempts_enqueue(delivery_ids: list[str]) -> None:
    from webhooks.tasks import attempts_enqueue

    attempts_enqueue(delivery_ids)


@dataclass(frozen=True)
class Dispatched:
    events: int
    delivery_ids: list[str]


@transaction.atomic
def events_dispatch(*, event_ids: Sequence[str], drain: int = 0) -> Dispatched:
    """Fan events out: one pending delivery per active subscription of the event's tenant that
    wants its type, all enqueued after commit.

    `drain` also takes up to that many other undispatched events (oldest first), so under load
    one task fans out a whole burst and its deliveries are attempted in batches. Idempotent and
    safe in parallel: each event row is locked (others skip it) and marked dispatched once, and
    a (subscription, event) pair is unique.
    """
    undispatched = (
        Event.objects.select_for_update(skip_locked=True)
        .filter(dispatched_at__isnull=True)
        .only("id", "tenant_id", "type")
    )
    events = list(undispatched.filter(pk__in=list(event_ids)))
    if drain > 0:
        taken = [event.pk for event in events]
        events += list(undispatched.exclude(pk__in=taken).order_by("created_at")[:drain])
    if not events:
        return Dispatched(events=0, delivery_ids=[])
    now = timezone.now()
    subscriptions = defaultdict(list)
    for subscription in WebhookSubscription.objects.filter(
        tenant_id__in={event.tenant_id for event in events}, is_active=True
    ).only("id", "tenant_id", "event_types"):
        subscriptions[subscription.tenant_id].append(subscription)
    deliveries = [
        Delivery(
            tenant_id=event.tenant_id,
            subscription=subscription,
            event=event,
            event_type=event.type,
            next_attempt_at=now,
        )
        for event in events
        if event.type in CATALOG and CATALOG[event.type].subscribable
        for subscription in subscriptions[event.tenant_id]
        if subscription.wants(event.type)
    ]
    Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    Event.objects.filter(pk__in=[event.pk for event in events]).update(dispatched_at=now)
    ids = [delivery.id for delivery in deliveries]
    if ids:
        transaction.on_commit(partial(_attempts_enqueue, ids), robust=True)
    return Dispatched(events=len(events), delivery_ids=ids)


def event_dispatch(*, event_id: str) -> list[str]:
    """Dispatch one event (if not yet dispatched); returns its new delivery ids."""
    return events_dispatch(event_ids=[event_id]).delivery_ids


def outbox_sweep(*, now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """Catch up on whatever an enqueue missed (run by celery beat).

    Dispatches events committed more than WEBHOOK_SWEEP_GRACE_SECONDS ago and still not
    dispatched (the process died between commit and enqueue, or the broker was down), and
    enqueues deliveries whose attempt is that overdue and not held by a live worker: retries
    scheduled beyond the countdown horizon, and attempts whose worker died mid-delivery (its
    lease expired). Enqueuing a delivery twice is harmless: an attempt first claims it.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS)
    # Overdue deliveries first, so those the events below fan out into are not counted twice.
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    event_ids = list(
        Event.objects.filter(dispatched_at__isnull=True, created_at__lte=cutoff)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    for start in range(0, len(event_ids), 100):
        events_dispatch(event_ids=event_ids[start : start + 100])
    if due:
        _attempts_enqueue(due)
    return {"events": len(event_ids), "deliveries": len(due)}
