"""Delivery over real HTTP to a loopback receiver: signing, retries, disabling, the log.

Attempts are driven by hand with a controlled clock (`now=`), the way the Celery tasks drive
them with the real one; in-process tasks run the first attempt right after commit.
"""

import itertools
import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from neuronx.context import Actor
from tests.conftest import lead_body, problem
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Reply
from usage.models import UsageEvent
from webhooks.delivery import delivery_attempt, retry_delay
from webhooks.dispatch import event_dispatch
from webhooks.models import Delivery, DeliveryStatus, Event, WebhookSubscription
from webhooks.sender import retry_after_seconds
from webhooks.services import event_publish

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_settings")]

SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


def publish(api, type: str = "lead.created", data: dict | None = None) -> Event:
    with transaction.atomic():
        event = event_publish(
            actor=Actor(tenant=api.tenant, internal="test", request_id="req_test"),
            type=type,
            data=data if data is not None else {"n": 1},
        )
    return event


def pending(api, subscription: dict, type: str = "lead.created") -> Delivery:
    """An event published and dispatched, its first attempt not yet made."""
    event = publish(api, type)
    event_dispatch(event_id=event.id)
    return Delivery.objects.get(subscription_id=subscription["id"], event=event)


def due(delivery: Delivery) -> datetime:
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    return delivery.next_attempt_at


# -- signing -----------------------------------------------------------------------------------


def test_every_event_arrives_signed_and_verifiable(
    alice, receiver, django_capture_on_commit_callbacks
):
    subscription = subscribe(alice, receiver.url(), ["lead.created"])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post("/v1/leads", lead_body(), headers={"X-Request-ID": "req-abc-1"})
    assert response.status_code == 201
    (request,) = receiver.requests
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-request-id"] == "req-abc-1"

    envelope = Webhook(subscription["secret"]).verify(request.body, request.headers)
    event = Event.objects.get(type="lead.created")
    assert envelope == json.loads(json.dumps(event.envelope()))
    assert set(envelope) == {"id", "type", "created_at", "tenant_id", "data"}
    assert envelope["type"] == "lead.created"
    assert envelope["tenant_id"] == alice.tenant.id
    assert envelope["data"]["lead"] == response.json()
    assert request.headers["webhook-id"] == envelope["id"] == event.id
    assert request.headers["webhook-signature"].startswith("v1,")

    tampered = request.body.replace(b"Lovelace", b"Babbage")
    with pytest.raises(WebhookVerificationError):
        Webhook(subscription["secret"]).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(subscription["secret"]).verify(
            request.body, {**request.headers, "webhook-id": "evt_other"}
        )
    other_secret = subscribe(alice, receiver.url())["secret"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(request.body, request.headers)

    delivery = Delivery.objects.get(subscription_id=subscription["id"])
    assert delivery.status == DeliveryStatus.SUCCEEDED
    usage = UsageEvent.objects.get(dimension="webhook.delivered")
    assert (usage.tenant_id, usage.quantity, usage.request_id) == (alice.tenant.id, 1, "req-abc-1")


def test_a_stale_timestamp_is_rejected_by_the_receiver(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    delivery = pending(alice, subscription)
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(hours=1)
    )
    # An attempt signed 10 minutes ago (a replayed request, say) is outside the 5-minute window.
    delivery_attempt(delivery_id=delivery.id, now=timezone.now() - timedelta(minutes=10))
    (request,) = receiver.requests
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(subscription["secret"]).verify(request.body, request.headers)


def test_the_webhook_id_is_the_same_on_every_attempt(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(500), Reply(503)]
    delivery = pending(alice, subscription)
    for _ in range(3):
        delivery_attempt(delivery_id=delivery.id, now=due(delivery))
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and ids == {delivery.event_id}
    signatures = {r.headers["webhook-signature"] for r in receiver.requests}
    assert len(signatures) == 3  # each attempt is signed afresh (its own timestamp)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempt_count == 3


def test_both_secrets_sign_during_a_rotation_overlap(alice, receiver):
    subscription = subscribe(alice, receiver.url(), ["*"])
    old = subscription["secret"]
    new = alice.post(f"/v1/webhook-subscriptions/{subscription['id']}/rotate-secret").json()[
        "secret"
    ]
    delivery = pending(alice, subscription)
    delivery_attempt(delivery_id=delivery.id)
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(request.body, request.headers)
    Webhook(old).verify(request.body, request.headers)

    expires = WebhookSubscription.objects.get(pk=subscription["id"]).previous_secret_expires_at
    later = pending(alice, subscription)
    delivery_attempt(delivery_id=later.id, now=expires + timedelta(seconds=1))
    assert len(receiver.requests[-1].headers["webhook-signature"].split(" ")) == 1


# -- outcomes and retries ----------------------------------------------------------------------


def test_retries_follow_the_schedule_then_the_delivery_fails(alice, receiver, settings):
    assert settings.WEBHOOK_RETRY_SCHEDULE == SCHEDULE
    receiver.default = Reply(500, b"upstream exploded")
    subscription = subscribe(alice, receiver.url())
    delivery = pending(alice, subscription)
    moments = []
    for _ in range(len(SCHEDULE) + 1):
        moment = due(delivery)
        moments.append(moment)
        assert delivery_attempt(delivery_id=delivery.id, now=moment - timedelta(seconds=1)) is None
        assert delivery_attempt(delivery_id=delivery.id, now=moment) is not None
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]
    assert gaps == SCHEDULE
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None and delivery.attempt_count == 8
    assert len(receiver.requests) == 8

    log = alice.get(f"/v1/webhook-subscriptions/{subscription['id']}/deliveries").json()
    (entry,) = log["results"]
    assert entry["status"] == "failed" and entry["last_status_code"] == 500
    assert [a["number"] for a in entry["attempts"]] == list(range(1, 9))
    for attempt in entry["attempts"]:
        assert attempt["status_code"] == 500 and attempt["succeeded"] is False
        assert attempt["response_excerpt"] == "upstream exploded"
        assert attempt["error"] == "HTTP 500: only a 2xx status counts as delivered."
        assert attempt["latency_ms"] is not None and attempt["trigger"] == "automatic"
    assert not UsageEvent.objects.filter(dimension="webhook.delivered").exists()


def test_retry_delays_are_jittered_within_bounds(settings):
    settings.WEBHOOK_RETRY_JITTER_PERCENT = 10
    delays = {
        retry_delay(automatic_attempts=2, retry_after=None).total_seconds() for _ in range(50)
    }
    assert all(270 <= d <= 330 for d in delays)
    assert len(delays) > 1
    assert retry_delay(automatic_attempts=8, retry_after=None) is None


def test_retry_after_is_honoured_and_capped(alice, receiver, settings):
    settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS = 3600
    subscription = subscribe(alice, receiver.url())
    delivery = pending(alice, subscription)
    now = timezone.now()
    receiver.replies = [
        Reply(429, headers={"Retry-After": "120"}),
        Reply(
            503,
            headers={
                "Retry-After": format_datetime(now + timedelta(hours=1, minutes=30), usegmt=True)
            },
        ),
        Reply(429, headers={"Retry-After": "1"}),  # shorter than the schedule: the schedule wins
    ]
    delivery_attempt(delivery_id=delivery.id, now=now)
    assert due(delivery) - now == timedelta(seconds=120)
    second = due(delivery)
    delivery_attempt(delivery_id=delivery.id, now=second)
    assert due(delivery) - second == timedelta(seconds=3600)  # capped
    third = due(delivery)
    delivery_attempt(delivery_id=delivery.id, now=third)
    assert due(delivery) - third == timedelta(seconds=SCHEDULE[2])


def test_retry_after_parsing():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now=now) == 30
    assert retry_after_seconds("Sat, 28 Nov 2026 12:02:00 GMT", now=now) == 120
    assert retry_after_seconds("Sat, 28 Nov 2026 11:00:00 GMT", now=now) == 0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds(None, now=now) is None


def test_redirects_are_not_followed(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(301, headers={"Location": receiver.url("/elsewhere")})]
    delivery = pending(alice, subscription)
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and attempt.status_code == 301 and not attempt.succeeded
    assert "not followed" in attempt.error and "/elsewhere" in attempt.error
    assert [r.path for r in receiver.requests] == ["/hook"]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING  # retried like any failure


def test_only_2xx_counts(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(204, b""), Reply(404), Reply(400)]
    outcomes = []
    for _ in range(3):
        attempt = delivery_attempt(delivery_id=pending(alice, subscription).id)
        outcomes.append((attempt.status_code, attempt.succeeded))
    assert outcomes == [(204, True), (404, False), (400, False)]


def test_a_slow_receiver_times_out_and_is_retried(alice, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(200, delay=1.0)]
    delivery = pending(alice, subscription)
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and attempt.status_code is None
    assert attempt.error == "Timed out after 0.3 s."
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_error == attempt.error


def test_a_refused_connection_is_logged_and_retried(alice, receiver):
    subscription = subscribe(alice, "http://127.0.0.1:9/hook")  # discard port, nothing listens
    delivery = pending(alice, subscription)
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and attempt.status_code is None
    assert attempt.error.startswith("ConnectError")
    assert due(delivery)


def test_the_log_keeps_the_first_kib_of_the_response(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(500, "é".encode() + b"x" * 5000)]
    attempt = delivery_attempt(delivery_id=pending(alice, subscription).id)
    assert attempt is not None
    assert attempt.response_excerpt.startswith("é")
    assert len(attempt.response_excerpt.encode()) <= 1024


def test_a_payload_over_the_limit_is_never_sent(alice, receiver, settings):
    settings.WEBHOOK_MAX_PAYLOAD_BYTES = 200
    subscription = subscribe(alice, receiver.url())
    event = publish(alice, data={"blob": "x" * 500})
    event_dispatch(event_id=event.id)
    delivery = Delivery.objects.get(event=event)
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and "over the 200-byte limit" in attempt.error
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert receiver.requests == []
    assert subscription


# -- disabling ---------------------------------------------------------------------------------


def test_410_gone_disables_the_subscription_at_once(alice, receiver):
    watcher = subscribe(alice, receiver.url("/ops"), ["subscription.disabled"])
    subscription = subscribe(alice, receiver.url("/gone"), ["lead.created", "lead.updated"])
    receiver.responder = lambda r: Reply(410) if r.path == "/gone" else Reply(200)
    first = pending(alice, subscription)
    waiting = pending(alice, subscription, "lead.updated")
    attempt = delivery_attempt(delivery_id=first.id)
    assert attempt is not None and attempt.status_code == 410

    shown = alice.get(f"/v1/webhook-subscriptions/{subscription['id']}").json()
    assert shown["is_active"] is False
    assert shown["disabled_reason"] == "The endpoint answered 410 Gone."
    assert shown["disabled_at"] is not None
    first.refresh_from_db()
    waiting.refresh_from_db()
    assert first.status == DeliveryStatus.FAILED  # no retry after 410
    assert waiting.status == DeliveryStatus.CANCELED
    assert waiting.note.startswith("The subscription was disabled")

    log = alice.get(f"/v1/webhook-subscriptions/{subscription['id']}/deliveries").json()
    note = log["results"][0]
    assert (note["event_type"], note["status"]) == ("subscription.disabled", "skipped")
    assert "410 Gone" in note["note"] and note["attempts"] == []

    # The tenant's other subscriptions that asked for it hear about it.
    disabled_event = Event.objects.get(type="subscription.disabled")
    event_dispatch(event_id=disabled_event.id)
    notice = Delivery.objects.get(subscription_id=watcher["id"])
    assert delivery_attempt(delivery_id=notice.id).succeeded
    data = json.loads(receiver.requests[-1].body)["data"]
    assert data["subscription"]["id"] == subscription["id"]
    assert data["subscription"]["disabled_reason"] == "The endpoint answered 410 Gone."

    # Nothing more is dispatched to it; a retry of a canceled delivery is a no-op.
    assert event_dispatch(event_id=publish(alice).id) == []
    assert delivery_attempt(delivery_id=waiting.id) is None


def test_a_subscription_failing_for_five_days_is_disabled_with_its_reason(
    alice, receiver, settings
):
    assert settings.WEBHOOK_DISABLE_AFTER_HOURS == 120
    receiver.default = Reply(502)
    subscription = subscribe(alice, receiver.url())
    first = pending(alice, subscription)
    start = timezone.now()
    delivery_attempt(delivery_id=first.id, now=start)
    record = WebhookSubscription.objects.get(pk=subscription["id"])
    assert record.failing_since == start and record.is_active

    # A success in between would have reset the streak; here every attempt fails.
    for hours in (30, 70, 119):
        delivery_attempt(
            delivery_id=pending(alice, subscription).id, now=start + timedelta(hours=hours)
        )
        record.refresh_from_db()
        assert record.is_active and record.failing_since == start

    last = pending(alice, subscription)
    delivery_attempt(delivery_id=last.id, now=start + timedelta(hours=120))
    record.refresh_from_db()
    assert record.is_active is False
    assert record.disabled_reason.startswith("Every attempt has failed since ")
    assert "over 120 hours" in record.disabled_reason and "HTTP 502" in record.disabled_reason
    last.refresh_from_db()
    assert last.status == DeliveryStatus.FAILED
    assert not Delivery.objects.filter(subscription=record, status="pending").exists()
    assert Delivery.objects.filter(
        subscription=record, event_type="subscription.disabled", status="skipped"
    ).exists()


def test_a_success_ends_the_failure_streak(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(500), Reply(200)]
    failing = pending(alice, subscription)
    start = timezone.now()
    delivery_attempt(delivery_id=failing.id, now=start)
    assert WebhookSubscription.objects.get(pk=subscription["id"]).failing_since == start
    delivery_attempt(delivery_id=pending(alice, subscription).id, now=start + timedelta(days=6))
    record = WebhookSubscription.objects.get(pk=subscription["id"])
    assert record.is_active and record.failing_since is None


# -- test pings and redelivery -----------------------------------------------------------------


def test_test_sends_a_ping_to_that_subscription_only(
    alice, receiver, django_capture_on_commit_callbacks
):
    subscription = subscribe(alice, receiver.url("/mine"), ["payment.verified"])
    subscribe(alice, receiver.url("/other"), ["*"])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(f"/v1/webhook-subscriptions/{subscription['id']}/test")
    assert response.status_code == 202, response.content
    accepted = response.json()
    assert (accepted["event_type"], accepted["status"]) == ("ping", "pending")
    (request,) = receiver.requests
    assert request.path == "/mine"
    envelope = Webhook(subscription["secret"]).verify(request.body, request.headers)
    assert envelope["type"] == "ping"
    assert envelope["data"]["subscription_id"] == subscription["id"]
    log = alice.get(f"/v1/webhook-subscriptions/{subscription['id']}/deliveries").json()
    assert log["results"][0]["status"] == "succeeded"
    assert log["results"][0]["attempts"][0]["trigger"] == "manual"
    assert not UsageEvent.objects.filter(dimension="webhook.delivered").exists()
    problem(
        alice.post(f"/v1/webhook-subscriptions/{subscription['id']}/test", {"x": 1}),
        422,
        "validation_error",
    )


def test_a_failed_ping_is_not_retried_and_does_not_count_against_the_subscription(
    alice, receiver, django_capture_on_commit_callbacks
):
    subscription = subscribe(alice, receiver.url())
    receiver.replies = [Reply(410)]
    with django_capture_on_commit_callbacks(execute=True):
        alice.post(f"/v1/webhook-subscriptions/{subscription['id']}/test")
    delivery = Delivery.objects.get(event_type="ping")
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None
    record = WebhookSubscription.objects.get(pk=subscription["id"])
    assert record.is_active and record.failing_since is None


def test_a_failed_delivery_can_be_redelivered(alice, receiver, django_capture_on_commit_callbacks):
    subscription = subscribe(alice, receiver.url())
    receiver.default = Reply(500)
    delivery = pending(alice, subscription)
    Delivery.objects.filter(pk=delivery.pk).update(automatic_attempts=len(SCHEDULE))
    delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED

    receiver.default = Reply(200)
    url = f"/v1/webhook-subscriptions/{subscription['id']}/deliveries/{delivery.id}"
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(f"{url}/redeliver")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    detail = alice.get(url).json()
    assert detail["status"] == "succeeded"
    assert [a["trigger"] for a in detail["attempts"]] == ["automatic", "manual"]
    assert detail["payload"]["id"] == delivery.event_id
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.event_id}
    Webhook(subscription["secret"]).verify(
        receiver.requests[-1].body, receiver.requests[-1].headers
    )
    assert UsageEvent.objects.filter(dimension="webhook.delivered").count() == 1


def test_redelivery_is_refused_while_pending_or_disabled(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    delivery = pending(alice, subscription)
    url = f"/v1/webhook-subscriptions/{subscription['id']}/deliveries/{delivery.id}/redeliver"
    problem(alice.post(url), 409, "webhook_delivery_pending")
    alice.patch(f"/v1/webhook-subscriptions/{subscription['id']}", {"is_active": False})
    problem(alice.post(url), 409, "webhook_subscription_inactive")
    problem(alice.post(url.replace(delivery.id, "whdel_01NOPE")), 404, "not_found")


def test_a_manual_redelivery_failure_is_final(alice, receiver):
    subscription = subscribe(alice, receiver.url())
    delivery = pending(alice, subscription)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None
    )
    receiver.default = Reply(500)
    alice.post(f"/v1/webhook-subscriptions/{subscription['id']}/deliveries/{delivery.id}/redeliver")
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and attempt.trigger == "manual"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None


# -- secrets -----------------------------------------------------------------------------------


def test_secrets_are_never_logged_nor_in_the_log(
    alice, receiver, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    subscription = subscribe(alice, receiver.url(), ["*"])
    rotated = alice.post(f"/v1/webhook-subscriptions/{subscription['id']}/rotate-secret").json()
    receiver.replies = [Reply(500, b"nope")]
    with django_capture_on_commit_callbacks(execute=True):
        alice.post("/v1/leads", lead_body())
    delivery = Delivery.objects.get(subscription_id=subscription["id"])
    delivery_attempt(delivery_id=delivery.id, now=due(delivery))
    base = f"/v1/webhook-subscriptions/{subscription['id']}"
    exposed = json.dumps(
        [
            alice.get(base).json(),
            alice.get("/v1/webhook-subscriptions").json(),
            alice.get(f"{base}/deliveries").json(),
            alice.get(f"{base}/deliveries/{delivery.id}").json(),
        ]
    )
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert any(r.name == "webhooks.delivery" for r in caplog.records)
    for secret in (subscription["secret"], rotated["secret"]):
        body = secret.removeprefix("whsec_")
        assert body not in exposed
        assert body not in logged
        assert secret not in repr(WebhookSubscription.objects.get(pk=subscription["id"]))
