"""Delivery attempts: claim, sign, send over an SSRF-pinned connection, record, reschedule.

Deliveries are attempted in batches (one task, one claim, one record transaction), each batch's
requests sent in parallel, each with its own timeout. Guarantees: at least once (a delivery
stays pending until a 2xx, retries exhausted, or its subscription disabled; a worker that dies
mid-attempt loses its lease and the sweep hands the delivery to another); the same `webhook-id`
(the event id) on every attempt; every attempt logged with status, latency, the first KiB of
the response and the error, never a secret.
"""

import json
import logging
import random
import secrets
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from neuronx.context import Actor, request_id_var
from usage.services import usage_record
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, WebhookSubscription
from webhooks.sender import Outcome, send_all
from webhooks.services import subscription_disable, subscription_secrets
from webhooks.signing import signature_headers

USER_AGENT = "NeuronX-Webhooks/1.0"
logger = logging.getLogger("webhooks.delivery")

# -- scheduling --------------------------------------------------------------------------------


def retry_delay(*, automatic_attempts: int, retry_after: int | None) -> timedelta | None:
    """Delay before the next automatic attempt, or None when the schedule is exhausted.

    The n-th delay of WEBHOOK_RETRY_SCHEDULE with ±WEBHOOK_RETRY_JITTER_PERCENT jitter; a
    receiver's `Retry-After` is honoured when longer (up to WEBHOOK_RETRY_AFTER_MAX_SECONDS).
    """
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if automatic_attempts > len(schedule):
        return None
    base = float(schedule[automatic_attempts - 1])
    jitter = settings.WEBHOOK_RETRY_JITTER_PERCENT / 100
    delay = base * (1 + random.uniform(-jitter, jitter))  # noqa: S311  (not cryptographic)
    if retry_after is not None:
        delay = max(delay, float(min(retry_after, settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS)))
    return timedelta(seconds=delay)


# -- attempts ----------------------------------------------------------------------------------


def deliveries_claim(*, delivery_ids: Sequence[str], now: datetime) -> tuple[str, list[Delivery]]:
    """Take the lease on those deliveries that are pending, due and not held by a live worker;
    returns the lease token and the claimed deliveries (with subscription, tenant, event)."""
    token = secrets.token_hex(16)
    Delivery.objects.filter(
        pk__in=list(delivery_ids), status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now)).update(
        locked_until=now + timedelta(seconds=settings.WEBHOOK_DELIVERY_LEASE_SECONDS),
        lease_token=token,
    )
    claimed = list(
        Delivery.objects.filter(pk__in=list(delivery_ids), lease_token=token).select_related(
            "subscription__tenant", "event"
        )
    )
    return token, claimed


def _request(delivery: Delivery, now: datetime) -> tuple[str, bytes, dict[str, str]] | Outcome:
    event, subscription = delivery.event, delivery.subscription
    body = json.dumps(event.envelope(), separators=(",", ":")).encode()
    if len(body) > settings.WEBHOOK_MAX_PAYLOAD_BYTES:
        return Outcome(
            error=f"Not sent: the payload is {len(body)} bytes, over the "
            f"{settings.WEBHOOK_MAX_PAYLOAD_BYTES}-byte limit.",
            final=True,
        )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signature_headers(
            message_id=event.id,
            timestamp=now,
            body=body.decode(),
            secrets_=subscription_secrets(subscription=subscription, now=now),
        ),
    }
    if event.request_id:
        headers["X-Request-ID"] = event.request_id
    return subscription.url, body, headers


def deliveries_attempt(
    *, delivery_ids: Sequence[str], now: datetime | None = None
) -> list[DeliveryAttempt]:
    """Make the due attempt of each pending delivery named, in parallel, and record them.

    Deliveries not due, already taken or finished are skipped; those of a disabled subscription
    are canceled (test pings excepted). Returns the attempts made.
    """
    now = now or timezone.now()
    token, claimed = deliveries_claim(delivery_ids=delivery_ids, now=now)
    inactive = [d.pk for d in claimed if not d.subscription.is_active and d.event.type != "ping"]
    if inactive:
        Delivery.objects.filter(pk__in=inactive, lease_token=token).update(
            status=DeliveryStatus.CANCELED,
            note="The subscription is disabled.",
            next_attempt_at=None,
            locked_until=None,
            lease_token="",
            finished_at=now,
        )
    claimed = [d for d in claimed if d.pk not in inactive]
    if not claimed:
        return []
    prepared = [_request(delivery, now) for delivery in claimed]
    to_send = [p for p in prepared if not isinstance(p, Outcome)]
    sent = iter(send_all(to_send, now) if to_send else [])
    outcomes = [p if isinstance(p, Outcome) else next(sent) for p in prepared]
    attempts = deliveries_record(
        results=list(zip(claimed, outcomes, strict=True)), token=token, now=now
    )
    for delivery, outcome in zip(claimed, outcomes, strict=True):
        request_token = request_id_var.set(delivery.event.request_id or None)
        logger.info(
            "webhook attempt",
            extra={
                "delivery_id": delivery.pk,
                "subscription_id": delivery.subscription_id,
                "event_id": delivery.event_id,
                "event_type": delivery.event.type,
                "status_code": outcome.status_code,
                "latency_ms": outcome.latency_ms,
                "succeeded": outcome.succeeded,
                "error": outcome.error,
            },
        )
        request_id_var.reset(request_token)
    return attempts


def delivery_attempt(*, delivery_id: str, now: datetime | None = None) -> DeliveryAttempt | None:
    """Make the due attempt of one delivery; None when there was none to make."""
    attempts = deliveries_attempt(delivery_ids=[delivery_id], now=now)
    return attempts[0] if attempts else None


@transaction.atomic
def deliveries_record(
    *, results: list[tuple[Delivery, Outcome]], token: str, now: datetime
) -> list[DeliveryAttempt]:
    """Log the attempts and move each delivery on: succeeded, retried on schedule, or failed.

    Successes meter `webhook.delivered` (one unit per delivery) and end their subscription's
    failure streak. A failure starts or extends it; `410 Gone`, or a streak older than
    WEBHOOK_DISABLE_AFTER_HOURS, disables the subscription. Pings change neither. A delivery
    canceled or retaken meanwhile (lease expired) only gets its attempt logged.
    """
    fetched = {delivery.pk: delivery for delivery, _ in results}
    rows = {d.pk: d for d in Delivery.objects.select_for_update().filter(pk__in=list(fetched))}
    attempts: list[DeliveryAttempt] = []
    moved: list[tuple[Delivery, Outcome]] = []
    for delivery, outcome in results:
        row = rows.get(delivery.pk)
        if row is None:  # its subscription was deleted meanwhile
            continue
        row.attempt_count += 1
        attempts.append(
            DeliveryAttempt(
                delivery=row,
                number=row.attempt_count,
                trigger=DeliveryAttempt.Trigger.MANUAL
                if row.manual
                else DeliveryAttempt.Trigger.AUTOMATIC,
                requested_at=now,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                response_excerpt=outcome.excerpt,
                error=outcome.error,
                succeeded=outcome.succeeded,
            )
        )
        if row.status == DeliveryStatus.PENDING and row.lease_token == token:
            moved.append((row, outcome))
    DeliveryAttempt.objects.bulk_create(attempts)

    delivered: dict[tuple[str, str], int] = defaultdict(int)
    healthy: set[str] = set()
    failed: dict[str, list[tuple[Delivery, Outcome]]] = defaultdict(list)
    retries: list[tuple[str, float]] = []
    for row, outcome in moved:
        counts = fetched[row.pk].event.type != "ping"
        if not row.manual:
            row.automatic_attempts += 1
        row.last_status_code = outcome.status_code
        row.last_error = outcome.error
        row.locked_until = None
        row.lease_token = ""
        delay = None
        if outcome.succeeded:
            if counts:
                healthy.add(row.subscription_id)
                delivered[row.tenant_id, fetched[row.pk].event.request_id] += 1
        else:
            if not (row.manual or outcome.final or outcome.status_code == 410):
                delay = retry_delay(
                    automatic_attempts=row.automatic_attempts, retry_after=outcome.retry_after
                )
            if counts:
                failed[row.subscription_id].append((row, outcome))
        _move(row, outcome, delay, now)
        if delay is not None and delay.total_seconds() <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
            retries.append((row.pk, delay.total_seconds()))

    if healthy:
        WebhookSubscription.objects.filter(pk__in=healthy, failing_since__isnull=False).update(
            failing_since=None
        )
    disable: list[tuple[WebhookSubscription, str, str]] = []
    for subscription_id, failures in failed.items():
        if subscription_id in healthy:  # a success in the same batch: it works
            continue
        reason = _failure_streak(subscription_id=subscription_id, failures=failures, now=now)
        if reason is not None:
            subscription, why = reason
            for row, outcome in failures:
                _move(row, outcome, None, now)
            retries = [r for r in retries if r[0] not in {row.pk for row, _ in failures}]
            disable.append((subscription, why, fetched[failures[0][0].pk].event.request_id))
    _save(rows=list(rows.values()), moved={row.pk for row, _ in moved})
    tenants = {delivery.tenant_id: delivery.subscription.tenant for delivery, _ in results}
    for (tenant_id, request_id), quantity in delivered.items():
        usage_record(
            actor=Actor(tenant=tenants[tenant_id], internal="webhooks", request_id=request_id),
            dimension="webhook.delivered",
            quantity=quantity,
        )
    for subscription, why, request_id in disable:
        subscription_disable(subscription=subscription, reason=why, now=now, request_id=request_id)
    for delivery_id, countdown in retries:
        transaction.on_commit(partial(_attempt_enqueue_later, delivery_id, countdown), robust=True)
    return attempts


def _save(*, rows: list[Delivery], moved: set[str]) -> None:
    """Write the batch back in as few UPDATEs as there are distinct outcomes (counters by F())."""
    groups: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for row in rows:
        if row.pk in moved:
            key: tuple[object, ...] = (
                row.status,
                row.manual,
                row.next_attempt_at,
                row.finished_at,
                row.last_status_code,
                row.last_error,
                row.automatic_attempts,
            )
        else:
            key = ()
        groups[key].append(row.pk)
    now = timezone.now()
    for key, pks in groups.items():
        changes: dict[str, object] = {"attempt_count": F("attempt_count") + 1, "updated_at": now}
        if key:
            status, manual, next_at, finished_at, status_code, error, automatic = key
            changes.update(
                status=status,
                manual=manual,
                next_attempt_at=next_at,
                finished_at=finished_at,
                last_status_code=status_code,
                last_error=error,
                automatic_attempts=automatic,
                locked_until=None,
                lease_token="",
            )
        Delivery.objects.filter(pk__in=pks).update(**changes)


def _move(row: Delivery, outcome: Outcome, delay: timedelta | None, now: datetime) -> None:
    if delay is None:
        row.status = DeliveryStatus.SUCCEEDED if outcome.succeeded else DeliveryStatus.FAILED
        row.next_attempt_at = None
        row.finished_at = now
        row.manual = False
    else:
        row.next_attempt_at = now + delay


def _failure_streak(
    *, subscription_id: str, failures: list[tuple[Delivery, Outcome]], now: datetime
) -> tuple[WebhookSubscription, str] | None:
    """Record failed attempts against their subscription; the disable reason, if it is due."""
    subscription = (
        WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
    )
    if subscription is None or not subscription.is_active:
        return None
    if subscription.failing_since is None:
        subscription.failing_since = now
        subscription.save(update_fields=["failing_since", "updated_at"])
    if any(outcome.status_code == 410 for _, outcome in failures):
        return subscription, "The endpoint answered 410 Gone."
    if now - subscription.failing_since >= timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS):
        since = subscription.failing_since.isoformat().replace("+00:00", "Z")
        return subscription, (
            f"Every attempt has failed since {since} (over "
            f"{settings.WEBHOOK_DISABLE_AFTER_HOURS} hours); last error: {failures[-1][1].error}"
        )
    return None


def _attempt_enqueue_later(delivery_id: str, countdown: float) -> None:
    from webhooks.tasks import attempt_enqueue

    attempt_enqueue(delivery_id, countdown=countdown)
