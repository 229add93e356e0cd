"""The outbox: events commit with their cause, fan out after commit, and the sweep catches up."""

import json
from datetime import timedelta
from io import StringIO

import jsonschema
import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from gtm_api.management.commands.seed_demo import DEMO_ROUTING
from gtm_api.services.routing import routing_config_install
from neuronx.context import Actor
from tests.conftest import lead_body
from tests.webhooks.conftest import subscribe
from webhooks.dispatch import event_dispatch, outbox_sweep
from webhooks.events import CATALOG
from webhooks.models import Delivery, DeliveryStatus, Event
from webhooks.schema import event_type_catalog
from webhooks.services import event_publish, event_publish_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_settings")]


def test_one_delivery_per_matching_active_subscription(
    alice, bob, receiver, django_capture_on_commit_callbacks
):
    wanted = subscribe(alice, receiver.url("/leads"), ["lead.created"])
    everything = subscribe(alice, receiver.url("/all"), ["*"])
    subscribe(alice, receiver.url("/payments"), ["payment.verified"])
    paused = subscribe(alice, receiver.url("/paused"), ["lead.created"])
    alice.patch(f"/v1/webhook-subscriptions/{paused['id']}", {"is_active": False})
    subscribe(bob, receiver.url("/bob"), ["*"])

    with django_capture_on_commit_callbacks(execute=True):
        lead = alice.post("/v1/leads", lead_body()).json()

    event = Event.objects.get(type="lead.created")
    assert event.dispatched_at is not None and event.data["lead"]["id"] == lead["id"]
    deliveries = Delivery.objects.filter(event=event)
    assert {d.subscription_id for d in deliveries} == {wanted["id"], everything["id"]}
    assert {d.status for d in deliveries} == {DeliveryStatus.SUCCEEDED}
    assert sorted(r.path for r in receiver.requests) == ["/all", "/leads"]
    assert event_dispatch(event_id=event.id) == []  # dispatched once
    assert Delivery.objects.filter(event=event).count() == 2


def test_no_event_and_no_delivery_for_a_change_that_rolled_back(alice, receiver):
    subscribe(alice, receiver.url(), ["*"])
    with pytest.raises(RuntimeError), transaction.atomic():
        event_publish(actor=Actor(tenant=alice.tenant), type="lead.created", data={})
        raise RuntimeError("the action failed")
    assert not Event.objects.exists() and not Delivery.objects.exists()


def test_failed_requests_and_idempotent_replays_publish_nothing(
    alice, receiver, django_capture_on_commit_callbacks
):
    subscribe(alice, receiver.url(), ["*"])
    with django_capture_on_commit_callbacks(execute=True):
        alice.post("/v1/leads", lead_body(), idempotency_key="lead-1")
        alice.post("/v1/leads", lead_body(), idempotency_key="lead-1")  # replay
        alice.post("/v1/leads", lead_body(), idempotency_key="lead-2")  # 409 lead_exists
    assert Event.objects.filter(type="lead.created").count() == 1
    assert len(receiver.requests) == 1


def test_the_sweep_dispatches_an_event_whose_enqueue_was_lost(
    alice, receiver, settings, django_capture_on_commit_callbacks
):
    subscription = subscribe(alice, receiver.url(), ["lead.created"])
    # The process "dies" between commit and enqueue: the callbacks never run.
    with django_capture_on_commit_callbacks(execute=False):
        alice.post("/v1/leads", lead_body())
    event = Event.objects.get(type="lead.created")
    assert event.dispatched_at is None and receiver.requests == []

    assert outbox_sweep() == {"events": 0, "deliveries": 0}  # too fresh: its enqueue may be due
    later = timezone.now() + timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox_sweep(now=later) == {"events": 1, "deliveries": 0}
    (request,) = receiver.requests
    assert request.headers["webhook-id"] == event.id
    delivery = Delivery.objects.get(subscription_id=subscription["id"])
    assert delivery.status == DeliveryStatus.SUCCEEDED


def test_the_sweep_resends_a_delivery_whose_worker_died(
    alice, receiver, settings, django_capture_on_commit_callbacks
):
    subscription = subscribe(alice, receiver.url(), ["lead.created"])
    with django_capture_on_commit_callbacks(execute=False):
        alice.post("/v1/leads", lead_body())
    event_dispatch(event_id=Event.objects.get().id)
    delivery = Delivery.objects.get(subscription_id=subscription["id"])
    # A worker claimed it and died mid-attempt: the lease is held, nothing was recorded.
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=now - timedelta(minutes=5),
        locked_until=now + timedelta(seconds=30),
        lease_token="dead-worker",
    )
    assert outbox_sweep(now=now) == {"events": 0, "deliveries": 0}  # the lease still holds
    assert receiver.requests == []
    after_lease = now + timedelta(seconds=31)
    Delivery.objects.filter(pk=delivery.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert outbox_sweep(now=after_lease) == {"events": 0, "deliveries": 1}
    assert len(receiver.requests) == 1  # in-process tasks: the attempt ran right away
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempt_count == 1


def test_the_sweep_sends_retries_that_are_due(alice, receiver, settings):
    subscription = subscribe(alice, receiver.url(), ["*"])
    with transaction.atomic():
        event = event_publish(actor=Actor(tenant=alice.tenant), type="lead.created", data={})
    event_dispatch(event_id=event.id)
    delivery = Delivery.objects.get(subscription_id=subscription["id"])
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(hours=1), automatic_attempts=3
    )
    assert outbox_sweep() == {"events": 0, "deliveries": 1}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED


def test_the_sweep_command_runs_the_sweep(alice):
    out = StringIO()
    call_command("webhooks_sweep", stdout=out)
    assert json.loads(out.getvalue()) == {"events": 0, "deliveries": 0}


def test_every_event_the_api_emits_matches_its_published_schema(
    alice, django_capture_on_commit_callbacks
):
    """Walk a lead through every capability; every event's envelope and data validate."""
    routing_config_install(tenant=alice.tenant, config=DEMO_ROUTING)
    now = timezone.now().isoformat()
    consents = [
        {"scope": s, "granted": True, "captured_at": now, "source": "web_form"}
        for s in ("data.profiling", "contact.email", "payment.processing")
    ]
    lead = alice.post("/v1/leads", lead_body(consents=consents)).json()
    lead_path = f"/v1/leads/{lead['id']}"
    alice.patch(lead_path, {"company": "Analytical Engines"})
    assert alice.post(f"{lead_path}/qualify").status_code == 200
    assert alice.post(f"{lead_path}/route").status_code == 200
    start = timezone.now() + timedelta(days=2)
    slot = {
        "lead_id": lead["id"],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
        "timezone": "Europe/London",
        "channel": "video",
    }
    first = alice.post("/v1/appointments", slot).json()
    alice.patch(f"/v1/appointments/{first['id']}", {"status": "canceled"})
    second = alice.post("/v1/appointments", slot).json()
    alice.patch(f"/v1/appointments/{second['id']}", {"notes": "Bring the deck"})
    payment = alice.post(
        "/v1/payments", {"lead_id": lead["id"], "amount": 1000, "currency": "EUR"}
    ).json()
    alice.post(f"/v1/payments/{payment['id']}/cancel")
    payment = alice.post(
        "/v1/payments", {"lead_id": lead["id"], "amount": 1000, "currency": "EUR"}
    ).json()
    call_command("verify_payment", payment["id"], stdout=StringIO())
    other = alice.post(
        "/v1/leads",
        lead_body(
            email="bad@gmail.com",
            company=...,
            job_title=...,
            phone=...,
            country=...,
            consents=consents,
        ),
    ).json()
    alice.post(f"/v1/leads/{other['id']}/qualify")
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            "/v1/lead-imports", {"leads": [lead_body(email="grace@hopper-labs.com")]}
        )
    assert response.status_code == 202, response.content

    schemas = {t["type"]: t["schema"] for t in event_type_catalog()}
    envelope = {
        "type": "object",
        "required": ["id", "type", "created_at", "tenant_id", "data"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^evt_"},
            "type": {"enum": sorted(CATALOG)},
            "created_at": {"type": "string", "format": "date-time"},
            "tenant_id": {"const": alice.tenant.id},
            "data": {"type": "object"},
        },
    }
    seen = set()
    for event in Event.objects.all():
        body = json.loads(json.dumps(event.envelope()))
        jsonschema.validate(body, envelope)
        jsonschema.validate(body["data"], schemas[event.type])
        seen.add(event.type)
    expected = {
        "lead.created",
        "lead.updated",
        "lead.qualified",
        "lead.disqualified",
        "lead.routed",
        "appointment.created",
        "appointment.updated",
        "appointment.canceled",
        "payment.initiated",
        "payment.failed",
        "payment.verified",
        "case.opened",
        "lead_import.completed",
    }
    assert expected <= seen, expected - seen


def test_many_events_are_published_in_one_go(alice, receiver, django_capture_on_commit_callbacks):
    subscription = subscribe(alice, receiver.url(), ["lead.created"])
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        events = event_publish_many(
            actor=Actor(tenant=alice.tenant, request_id="req_bulk"),
            type="lead.created",
            data=[{"lead": {"n": n}} for n in range(150)],
        )
    assert len(events) == 150
    assert len(callbacks) >= 1
    assert (
        Delivery.objects.filter(
            subscription_id=subscription["id"], status=DeliveryStatus.SUCCEEDED
        ).count()
        == 150
    )
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 150


def test_with_a_shared_cache_one_queued_task_dispatches_a_whole_burst(
    alice, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    from webhooks import tasks

    subscription = subscribe(alice, receiver.url(), ["lead.created"])
    queued: list[list[str]] = []
    monkeypatch.setattr(tasks, "_coalescing", lambda: True)
    monkeypatch.setattr(tasks.events_dispatch, "delay", queued.append)
    monkeypatch.setattr(tasks, "attempts_enqueue", lambda ids: None)
    actor = Actor(tenant=alice.tenant)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            event_publish(actor=actor, type="lead.created", data={})
    assert queued == [[]]  # one task, told to drain the outbox

    assert tasks.events_dispatch.run([]) == 3  # all three fanned out by it
    assert Delivery.objects.filter(subscription_id=subscription["id"]).count() == 3
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event_publish(actor=actor, type="lead.created", data={})
    assert queued == [[], []]  # the task cleared the flag when it started: a new one is queued
