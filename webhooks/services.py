"""Webhook writes: publishing events to the outbox, and managing subscriptions and deliveries."""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from neuronx import errors
from neuronx.context import Actor
from neuronx.inserts import insert
from neuronx.models import Tenant
from webhooks.events import ALL_TYPES, CATALOG, SUBSCRIBABLE
from webhooks.models import Delivery, DeliveryStatus, Event, WebhookSubscription
from webhooks.selectors import delivery_get, subscription_get
from webhooks.signing import secret_generate
from webhooks.targets import TargetForbidden, target_check


def _dispatch_enqueue(event_ids: Sequence[str]) -> None:
    from webhooks.tasks import dispatch_enqueue

    dispatch_enqueue(event_ids)


def _attempts_enqueue(delivery_ids: Sequence[str]) -> None:
    from webhooks.tasks import attempts_enqueue

    attempts_enqueue(delivery_ids)


def event_publish(*, actor: Actor, type: str, data: dict[str, Any]) -> Event:
    """Write an outbound event to the outbox, inside the caller's transaction.

    The event commits or rolls back with the change that caused it; after commit it is handed
    to the dispatcher (one delivery per matching active subscription). If that hand-off is lost
    (crash, broker down), the periodic sweep dispatches the event later: never lost, never sent
    for a change that did not happen.
    """
    assert type in CATALOG and CATALOG[type].subscribable, type
    assert transaction.get_connection().in_atomic_block, "events must be published in the action"
    event = insert(Event(tenant=actor.tenant, type=type, data=data, request_id=actor.request_id))
    transaction.on_commit(partial(_dispatch_enqueue, [event.id]), robust=True)
    return event


def event_publish_many(*, actor: Actor, type: str, data: Iterable[dict[str, Any]]) -> list[Event]:
    """`event_publish` for many events of one type (bulk imports): one INSERT, one hand-off."""
    assert type in CATALOG and CATALOG[type].subscribable, type
    assert transaction.get_connection().in_atomic_block, "events must be published in the action"
    events = Event.objects.bulk_create(
        [
            Event(tenant=actor.tenant, type=type, data=item, request_id=actor.request_id)
            for item in data
        ]
    )
    if events:
        ids = [event.id for event in events]
        transaction.on_commit(partial(_dispatch_enqueue, ids), robust=True)
    return events


# -- subscriptions -----------------------------------------------------------------------------


def _url_checked(url: str) -> str:
    try:
        target_check(url)
    except TargetForbidden as exc:
        raise errors.ValidationFailed(
            [{"field": "url", "code": exc.code, "message": exc.message}]
        ) from None
    return url


def _event_types_checked(event_types: Sequence[str]) -> list[str]:
    unknown = [
        {
            "field": f"event_types[{index}]",
            "code": "unknown_event_type",
            "message": f"{name!r} is not a subscribable event type (see GET /v1/event-types).",
        }
        for index, name in enumerate(event_types)
        if name != ALL_TYPES and name not in SUBSCRIBABLE
    ]
    if unknown:
        raise errors.ValidationFailed(unknown)
    if not event_types:
        raise errors.ValidationFailed(
            [{"field": "event_types", "code": "empty", "message": "Name at least one type."}]
        )
    if ALL_TYPES in event_types:
        return [ALL_TYPES]
    return list(dict.fromkeys(event_types))


@transaction.atomic
def subscription_create(
    *, actor: Actor, url: str, event_types: Sequence[str], description: str = ""
) -> WebhookSubscription:
    """Register a webhook endpoint for the tenant, active at once, with a new signing secret.

    The URL must pass the SSRF rules (`webhooks.targets`); at most
    WEBHOOK_MAX_SUBSCRIPTIONS_PER_TENANT per tenant (`webhook_limit_reached`, safe under
    concurrency: the tenant row is locked while counting). The caller shows `secret` once.
    """
    url = _url_checked(url)
    types = _event_types_checked(event_types)
    Tenant.objects.select_for_update().filter(pk=actor.tenant.pk).first()
    count = WebhookSubscription.objects.filter(tenant=actor.tenant).count()
    if count >= settings.WEBHOOK_MAX_SUBSCRIPTIONS_PER_TENANT:
        raise errors.WebhookLimitReached(
            f"The tenant already has {count} webhook subscriptions, the maximum."
        )
    return WebhookSubscription.objects.create(
        tenant=actor.tenant,
        url=url,
        event_types=types,
        description=description,
        secret=secret_generate(),
    )


@transaction.atomic
def subscription_update(
    *, actor: Actor, subscription_id: str, data: dict[str, Any]
) -> WebhookSubscription:
    """Change `url`, `event_types`, `description` or `is_active`.

    Deactivating cancels the pending deliveries; re-activating clears the disabled reason and
    the failure streak, so the subscription starts afresh (canceled deliveries can be
    redelivered).
    """
    subscription = subscription_get(
        tenant=actor.tenant, subscription_id=subscription_id, for_update=True
    )
    if "url" in data and data["url"] != subscription.url:
        subscription.url = _url_checked(data["url"])
    if "event_types" in data:
        subscription.event_types = _event_types_checked(data["event_types"])
    if "description" in data:
        subscription.description = data["description"]
    if "is_active" in data and data["is_active"] != subscription.is_active:
        subscription.is_active = data["is_active"]
        if subscription.is_active:
            subscription.disabled_reason = ""
            subscription.disabled_at = None
            subscription.failing_since = None
        else:
            deliveries_cancel(subscription=subscription, note="The subscription was deactivated.")
    subscription.save()
    return subscription


@transaction.atomic
def subscription_delete(*, actor: Actor, subscription_id: str) -> None:
    """Delete the subscription with its delivery log; nothing more is sent to it."""
    subscription = subscription_get(
        tenant=actor.tenant, subscription_id=subscription_id, for_update=True
    )
    # Its deliveries locked before their attempts are deleted, in the order the log's purge
    # takes them (webhooks/retention.py): otherwise each could wait for the other.
    list(
        Delivery.objects.select_for_update()
        .filter(subscription=subscription)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    subscription.delete()


@transaction.atomic
def subscription_rotate_secret(
    *, actor: Actor, subscription_id: str, overlap_seconds: int | None = None
) -> WebhookSubscription:
    """Give the subscription a new secret; the current one keeps signing for the overlap.

    During the overlap (default WEBHOOK_SECRET_OVERLAP_HOURS, 0 revokes the old secret at once)
    every attempt carries two signatures, so receivers can switch secrets without losing a
    message. Rotating again during an overlap drops the oldest secret.
    """
    subscription = subscription_get(
        tenant=actor.tenant, subscription_id=subscription_id, for_update=True
    )
    if overlap_seconds is None:
        overlap_seconds = settings.WEBHOOK_SECRET_OVERLAP_HOURS * 3600
    if overlap_seconds > 0:
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_expires_at = timezone.now() + timedelta(
            seconds=overlap_seconds
        )
    else:
        subscription.previous_secret = ""
        subscription.previous_secret_expires_at = None
    subscription.secret = secret_generate()
    subscription.save()
    return subscription


def subscription_secrets(*, subscription: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets that sign an attempt made at `now`: the current one, then the previous one
    while its overlap lasts."""
    secrets = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and now < expires:
        secrets.append(subscription.previous_secret)
    return secrets


@transaction.atomic
def subscription_test(*, actor: Actor, subscription_id: str) -> Delivery:
    """Send a `ping` event to this subscription only (whatever its event types or state).

    One attempt, no retries; it neither changes the subscription's health nor is metered. The
    outcome shows in the deliveries log.
    """
    subscription = subscription_get(tenant=actor.tenant, subscription_id=subscription_id)
    now = timezone.now()
    event = Event.objects.create(
        tenant=actor.tenant,
        type="ping",
        data={
            "subscription_id": subscription.id,
            "message": "A test event from NeuronX: answer with any 2xx status.",
        },
        request_id=actor.request_id,
        dispatched_at=now,
    )
    delivery = Delivery.objects.create(
        tenant=actor.tenant,
        subscription=subscription,
        event=event,
        event_type=event.type,
        manual=True,
        next_attempt_at=now,
    )
    transaction.on_commit(partial(_attempts_enqueue, [delivery.id]), robust=True)
    return delivery


# -- deliveries --------------------------------------------------------------------------------


@transaction.atomic
def delivery_redeliver(*, actor: Actor, subscription_id: str, delivery_id: str) -> Delivery:
    """Send a finished delivery (succeeded, failed or canceled) again, once, now.

    Same `webhook-id` and body as before, freshly signed. Refused while it is still pending
    (`webhook_delivery_pending`) or while the subscription is disabled
    (`webhook_subscription_inactive`).
    """
    delivery = delivery_get(
        tenant=actor.tenant,
        subscription_id=subscription_id,
        delivery_id=delivery_id,
        for_update=True,
    )
    if delivery.status == DeliveryStatus.PENDING:
        raise errors.WebhookDeliveryPending()
    if not delivery.subscription.is_active:
        raise errors.WebhookSubscriptionInactive()
    delivery.status = DeliveryStatus.PENDING
    delivery.manual = True
    delivery.next_attempt_at = timezone.now()
    delivery.finished_at = None
    delivery.note = ""
    delivery.save()
    transaction.on_commit(partial(_attempts_enqueue, [delivery.id]), robust=True)
    return delivery


def deliveries_cancel(*, subscription: WebhookSubscription, note: str) -> int:
    """Cancel the subscription's pending deliveries (it was disabled); they stay redeliverable
    until the log's retention period (WEBHOOK_LOG_RETENTION_DAYS) ends."""
    return Delivery.objects.filter(subscription=subscription, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.CANCELED,
        note=note,
        next_attempt_at=None,
        locked_until=None,
        lease_token="",
        finished_at=timezone.now(),
    )


def subscription_disable(
    *, subscription: WebhookSubscription, reason: str, now: datetime, request_id: str = ""
) -> None:
    """Disable a subscription that cannot take deliveries, inside the caller's transaction.

    Records why, cancels its pending deliveries, publishes `subscription.disabled` (delivered to
    the tenant's other subscriptions that ask for it) and writes that event into the disabled
    subscription's own log as a `skipped` note.
    """
    assert transaction.get_connection().in_atomic_block
    subscription.is_active = False
    subscription.disabled_reason = reason
    subscription.disabled_at = now
    subscription.save(update_fields=["is_active", "disabled_reason", "disabled_at", "updated_at"])
    deliveries_cancel(subscription=subscription, note=f"The subscription was disabled: {reason}")
    actor = Actor(tenant=subscription.tenant, internal="webhooks", request_id=request_id)
    event = event_publish(
        actor=actor,
        type="subscription.disabled",
        data={
            "subscription": {
                "id": subscription.id,
                "url": subscription.url,
                "disabled_reason": reason,
                "disabled_at": now.isoformat().replace("+00:00", "Z"),
            }
        },
    )
    Delivery.objects.create(
        tenant=subscription.tenant,
        subscription=subscription,
        event=event,
        event_type=event.type,
        status=DeliveryStatus.SKIPPED,
        note=f"Not sent: this subscription was disabled. {reason}",
        finished_at=now,
    )
