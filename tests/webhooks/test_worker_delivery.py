"""The production path: a real Celery worker process (Redis in CI, a filesystem broker under
`make test`) delivering to a real HTTP receiver, surviving a worker killed mid-delivery."""

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kombu import pools
from standardwebhooks import Webhook

from tests.conftest import lead_body
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Received, Reply
from tests.worker import celery_worker as _celery_worker
from usage.models import UsageEvent
from webhooks.models import Delivery, DeliveryStatus, Event
from webhooks.tasks import outbox_sweep

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_env(settings, monkeypatch):
    """Short leases and no sweep grace, in this process and in the workers it starts. A lease
    outlasts any one attempt (`WEBHOOK_TIMEOUT_SECONDS`, 15 s): a sweep must not retake a live
    one, however slow the machine."""
    for name, value in {
        "WEBHOOK_DELIVERY_LEASE_SECONDS": "20",
        "WEBHOOK_SWEEP_GRACE_SECONDS": "0",
        "WEBHOOK_RETRY_SCHEDULE": "1,1,1",
        "WEBHOOK_RETRY_JITTER_PERCENT": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_DELIVERY_LEASE_SECONDS = 20
    settings.WEBHOOK_SWEEP_GRACE_SECONDS = 0
    return settings


@contextmanager
def celery_worker(tmp_path: Path) -> Iterator[Any]:
    # tests.worker closes kombu's pool for the broker URL on exit but leaves it registered, so
    # a later worker on the same URL (Redis in CI) would publish into a closed pool.
    pools.reset()
    try:
        with _celery_worker(tmp_path) as worker:
            yield worker
    finally:
        pools.reset()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _kill_worker(process) -> None:
    """SIGKILL the worker and its pool processes at once: a crash, no chance to clean up."""
    pool = _children(process.pid)
    process.kill()
    for pid in pool:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_a_real_worker_delivers_every_event_signed_and_retries_failures(
    worker_env, alice, receiver, tmp_path
):
    subscription = subscribe(alice, receiver.url(), ["lead.created", "lead.updated"])
    failures = {"lead.created": [503, 500]}  # the created event fails twice, then gets through

    def respond(request: Received) -> Reply:
        scripted = failures.get(json.loads(request.body)["type"])
        return Reply(scripted.pop(0)) if scripted else Reply(200)

    receiver.responder = respond
    with celery_worker(tmp_path) as worker:
        lead = alice.post("/v1/leads", lead_body()).json()
        alice.patch(f"/v1/leads/{lead['id']}", {"company": "Difference Engines"})
        worker.wait_for(
            lambda: Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == 2
        )
    envelopes = [
        Webhook(subscription["secret"]).verify(r.body, r.headers) for r in receiver.requests
    ]
    assert sorted(e["type"] for e in envelopes) == [
        "lead.created",
        "lead.created",
        "lead.created",
        "lead.updated",
    ]
    assert {e["id"] for e in envelopes} == set(Event.objects.values_list("id", flat=True))
    created = Delivery.objects.get(event_type="lead.created")
    assert [a.status_code for a in created.attempts.all()] == [503, 500, 200]
    assert UsageEvent.objects.filter(dimension="webhook.delivered").count() == 2


def test_a_worker_killed_mid_delivery_loses_nothing(worker_env, alice, receiver, tmp_path):
    subscription = subscribe(alice, receiver.url(), ["lead.created"])
    arrived = threading.Event()
    release = threading.Event()

    def respond(request: Received) -> Reply:
        if len(receiver.requests) == 1:  # the first attempt hangs until its worker is dead
            arrived.set()
            release.wait(30)
            return Reply(500, b"too late")
        return Reply(200)

    receiver.responder = respond
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    with celery_worker(tmp_path / "first") as worker:
        alice.post("/v1/leads", lead_body())
        assert arrived.wait(90), worker.log()[-3000:]
        _kill_worker(worker.process)
    release.set()
    delivery = Delivery.objects.get(subscription_id=subscription["id"])
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempt_count == 0

    with celery_worker(tmp_path / "second") as worker:
        last_sweep = [0.0]

        def delivered() -> bool:
            if time.monotonic() - last_sweep[0] > 3:
                outbox_sweep.delay()  # what celery beat does every minute
                last_sweep[0] = time.monotonic()
            return Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SUCCEEDED).exists()

        worker.wait_for(delivered)
    first, second = receiver.requests[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.event_id
    Webhook(subscription["secret"]).verify(second.body, second.headers)
    delivery.refresh_from_db()
    assert delivery.attempt_count == 1 and delivery.attempts.get().status_code == 200
