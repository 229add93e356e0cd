"""The delivery log's retention: what finished more than WEBHOOK_LOG_RETENTION_DAYS ago goes with
its attempts and its event, nothing pending ever does, and a purged delivery is gone from the API."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import problem
from tests.webhooks.conftest import subscribe
from tests.webhooks.test_delivery import publish
from webhooks.dispatch import event_dispatch
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Event
from webhooks.retention import webhook_log_purge
from webhooks.tasks import log_purge

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_settings")]

DAYS = 30  # the default


def finished(api, subscription, *, days_ago: float, status: str = DeliveryStatus.SUCCEEDED):
    """A delivery of a new event to the subscription, with one attempt, finished that long ago
    (the event dispatched a day before)."""
    event = publish(api)
    event_dispatch(event_id=event.id)  # already done where the publish committed
    delivery = Delivery.objects.get(subscription_id=subscription["id"], event=event)
    at = timezone.now() - timedelta(days=days_ago)
    if not delivery.attempts.exists():  # its attempt was not enqueued: nothing committed
        DeliveryAttempt.objects.create(
            delivery=delivery, number=1, trigger="automatic", requested_at=at, status_code=200
        )
    Delivery.objects.filter(pk=delivery.pk).update(
        status=status, finished_at=at, next_attempt_at=None, attempt_count=1
    )
    Event.objects.filter(pk=event.pk).update(
        created_at=at - timedelta(days=1), dispatched_at=at - timedelta(days=1)
    )
    return Delivery.objects.get(pk=delivery.pk)


def test_finished_deliveries_go_with_their_attempts_and_events_after_the_period(
    alice, bob, receiver
):
    ours = subscribe(alice, receiver.url(), ["*"])
    theirs = subscribe(bob, receiver.url(), ["*"])
    gone = [
        finished(alice, ours, days_ago=DAYS + 1, status=status)
        for status in (
            DeliveryStatus.SUCCEEDED,
            DeliveryStatus.FAILED,
            DeliveryStatus.CANCELED,
            DeliveryStatus.SKIPPED,
        )
    ]
    gone.append(finished(bob, theirs, days_ago=DAYS + 400))  # every tenant's, by age alone
    kept = finished(alice, ours, days_ago=DAYS - 1)
    # Still being retried, 40 days after its event: pending work is never purged.
    retrying = finished(alice, ours, days_ago=DAYS + 10)
    Delivery.objects.filter(pk=retrying.pk).update(
        status=DeliveryStatus.PENDING, finished_at=None, next_attempt_at=timezone.now()
    )
    # Sent to two subscriptions: the event stays while either delivery does.
    shared = finished(alice, ours, days_ago=DAYS + 1)
    sibling = Delivery.objects.create(
        tenant=alice.tenant,
        subscription_id=subscribe(alice, receiver.url("/other"), ["*"])["id"],
        event_id=shared.event_id,
        event_type=shared.event_type,
        status=DeliveryStatus.SUCCEEDED,
        finished_at=timezone.now() - timedelta(days=1),
    )
    long_ago = timezone.now() - timedelta(days=DAYS + 10)
    # Dispatched with no delivery (the events below were never fanned out: their dispatch
    # is set by hand): nothing needs the old one; the recent one is kept for its period.
    unsent = publish(alice)
    Event.objects.filter(pk=unsent.pk).update(created_at=long_ago, dispatched_at=long_ago)
    recent = timezone.now() - timedelta(days=DAYS - 1)
    unsent_recently = publish(alice)
    Event.objects.filter(pk=unsent_recently.pk).update(created_at=recent, dispatched_at=recent)
    # Never dispatched (its hand-off was lost, the sweep has yet to run): never purged.
    undispatched = publish(alice)
    Event.objects.filter(pk=undispatched.pk).update(created_at=long_ago)

    assert webhook_log_purge() == {"deliveries": 6, "events": 6}

    assert set(Delivery.objects.values_list("id", flat=True)) == {
        kept.pk,
        retrying.pk,
        sibling.pk,
    }
    assert set(DeliveryAttempt.objects.values_list("delivery_id", flat=True)) == {
        kept.pk,
        retrying.pk,
    }
    assert set(Event.objects.values_list("id", flat=True)) == {
        kept.event_id,
        retrying.event_id,
        shared.event_id,
        unsent_recently.pk,
        undispatched.pk,
    }
    assert webhook_log_purge() == {"deliveries": 0, "events": 0}  # nothing more to do


def test_a_purged_delivery_is_not_found_and_a_kept_one_is_still_there(alice, bob, receiver):
    subscription = subscribe(alice, receiver.url(), ["*"])
    old = finished(alice, subscription, days_ago=DAYS + 1, status=DeliveryStatus.FAILED)
    recent = finished(alice, subscription, days_ago=1, status=DeliveryStatus.FAILED)
    webhook_log_purge()

    base = f"/v1/webhook-subscriptions/{subscription['id']}/deliveries"
    listed = alice.get(base).json()["results"]
    assert [delivery["id"] for delivery in listed] == [recent.pk]
    problem(alice.get(f"{base}/{old.pk}"), 404, "not_found")
    problem(alice.post(f"{base}/{old.pk}/redeliver", {}), 404, "not_found")
    assert alice.get(f"{base}/{recent.pk}").status_code == 200
    problem(bob.get(f"{base}/{recent.pk}"), 404, "not_found")  # still another tenant's


def test_a_redelivered_delivery_is_kept_until_it_finishes_again(alice, receiver):
    subscription = subscribe(alice, receiver.url(), ["*"])
    old = finished(alice, subscription, days_ago=DAYS + 1, status=DeliveryStatus.FAILED)
    path = f"/v1/webhook-subscriptions/{subscription['id']}/deliveries/{old.pk}/redeliver"
    assert alice.post(path, {}).status_code == 202  # pending again; its attempt awaits commit

    assert webhook_log_purge() == {"deliveries": 0, "events": 0}
    old.refresh_from_db()
    assert old.status == DeliveryStatus.PENDING and old.finished_at is None


def test_a_backlog_is_purged_in_batches(alice, receiver):
    subscription = subscribe(alice, receiver.url(), ["*"])
    for _ in range(5):
        finished(alice, subscription, days_ago=DAYS + 1)
    assert webhook_log_purge(batch=2) == {"deliveries": 5, "events": 5}
    assert not Delivery.objects.exists() and not Event.objects.exists()


def test_a_run_stops_after_its_time_and_the_next_carries_on(alice, receiver):
    subscription = subscribe(alice, receiver.url(), ["*"])
    for _ in range(3):
        finished(alice, subscription, days_ago=DAYS + 1)
    # Out of time after the first batch of each kind; each run still makes progress.
    assert webhook_log_purge(batch=2, seconds=0) == {"deliveries": 2, "events": 2}
    assert webhook_log_purge(batch=2, seconds=0) == {"deliveries": 1, "events": 1}
    assert webhook_log_purge(batch=2, seconds=0) == {"deliveries": 0, "events": 0}


def test_a_purge_reads_ids_not_payloads(alice, receiver):
    subscription = subscribe(alice, receiver.url(), ["*"])
    for _ in range(20):
        finished(alice, subscription, days_ago=DAYS + 1)
    with CaptureQueriesContext(connection) as queries:
        assert webhook_log_purge() == {"deliveries": 20, "events": 20}
    sql = [query["sql"] for query in queries]
    assert not any('"webhooks_event"."data"' in statement for statement in sql), sql
    assert len(sql) <= 20, sql  # a fixed number per batch, not one per row


def test_the_period_is_a_setting_and_zero_keeps_everything(alice, receiver, settings):
    subscription = subscribe(alice, receiver.url(), ["*"])
    delivery = finished(alice, subscription, days_ago=3)
    settings.WEBHOOK_LOG_RETENTION_DAYS = 0
    assert webhook_log_purge(now=timezone.now() + timedelta(days=3650)) == {
        "deliveries": 0,
        "events": 0,
    }
    settings.WEBHOOK_LOG_RETENTION_DAYS = 4
    assert webhook_log_purge() == {"deliveries": 0, "events": 0}
    settings.WEBHOOK_LOG_RETENTION_DAYS = 2
    assert webhook_log_purge() == {"deliveries": 1, "events": 1}
    assert not Delivery.objects.filter(pk=delivery.pk).exists()


def test_celery_beat_runs_the_purge_hourly(alice, receiver, settings):
    assert settings.CELERY_BEAT_SCHEDULE["webhooks-log-purge"] == {
        "task": "webhooks.tasks.log_purge",
        "schedule": 3600.0,
    }
    subscription = subscribe(alice, receiver.url(), ["*"])
    finished(alice, subscription, days_ago=DAYS + 1)
    assert log_purge.apply().get() == {"deliveries": 1, "events": 1}


@pytest.mark.django_db(transaction=True)
def test_a_delivery_locked_elsewhere_is_left_for_the_next_purge(alice, receiver):
    """A redelivery holds the row while it makes the delivery pending again; the purge neither
    waits for it nor deletes what the redelivery has just revived."""
    subscription = subscribe(alice, receiver.url(), ["*"])
    old = finished(alice, subscription, days_ago=DAYS + 1, status=DeliveryStatus.FAILED)
    if connection.vendor == "postgresql":
        other = connection.get_new_connection(connection.get_connection_params())
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # a purge that waits fails, not hangs
        try:
            with other.cursor() as cursor:  # a transaction of another session
                cursor.execute(
                    "SELECT id FROM webhooks_delivery WHERE id = %s FOR UPDATE", [old.pk]
                )
                assert webhook_log_purge() == {"deliveries": 0, "events": 0}
                cursor.execute(
                    "UPDATE webhooks_delivery SET status = 'pending', finished_at = NULL "
                    "WHERE id = %s",
                    [old.pk],
                )
            other.commit()
        finally:
            other.close()
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    else:
        # SQLite lets one writer in at a time: the redelivery commits before the purge begins.
        Delivery.objects.filter(pk=old.pk).update(status=DeliveryStatus.PENDING, finished_at=None)
    assert webhook_log_purge() == {"deliveries": 0, "events": 0}
    assert Delivery.objects.get(pk=old.pk).status == DeliveryStatus.PENDING
