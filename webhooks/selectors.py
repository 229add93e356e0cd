"""Webhook reads, always scoped to one tenant: another tenant's objects are simply not found."""

from django.db.models import QuerySet

from neuronx import errors
from neuronx.models import Tenant
from webhooks.models import Delivery, WebhookSubscription


def subscription_get(
    *, tenant: Tenant, subscription_id: str, for_update: bool = False
) -> WebhookSubscription:
    subscriptions = WebhookSubscription.objects.filter(tenant=tenant)
    if for_update:
        subscriptions = subscriptions.select_for_update()
    subscription = subscriptions.filter(pk=subscription_id).first()
    if subscription is None:
        raise errors.NotFound(f"No webhook subscription {subscription_id!r}.")
    return subscription


def subscription_list(*, tenant: Tenant) -> QuerySet[WebhookSubscription]:
    return WebhookSubscription.objects.filter(tenant=tenant)


def delivery_list(
    *,
    tenant: Tenant,
    subscription_id: str,
    status: str | None = None,
    event_type: str | None = None,
) -> QuerySet[Delivery]:
    """The subscription's delivery log, each delivery with its attempts (two queries a page)."""
    subscription = subscription_get(tenant=tenant, subscription_id=subscription_id)
    deliveries = Delivery.objects.filter(tenant=tenant, subscription=subscription)
    if status is not None:
        deliveries = deliveries.filter(status=status)
    if event_type is not None:
        deliveries = deliveries.filter(event_type=event_type)
    return deliveries.prefetch_related("attempts")


def delivery_get(
    *, tenant: Tenant, subscription_id: str, delivery_id: str, for_update: bool = False
) -> Delivery:
    deliveries = Delivery.objects.filter(
        tenant=tenant, subscription_id=subscription_id, pk=delivery_id
    ).select_related("subscription", "event")
    if for_update:
        deliveries = deliveries.select_for_update()
    delivery = deliveries.first()
    if delivery is None:
        raise errors.NotFound(f"No delivery {delivery_id!r} for subscription {subscription_id!r}.")
    return delivery
