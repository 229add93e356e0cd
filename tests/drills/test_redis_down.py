"""Drill: Redis (the rate-limit cache and the Celery broker) killed and later back, empty.

Runs on a private Redis (the shared one is never stopped) and the shared PostgreSQL. While
Redis is down the API keeps answering: rate limiting fails open with a logged warning, writes
succeed, events and an import are committed though nothing can be enqueued, and `/readyz` says
what is missing. When Redis returns, with its queues lost, beat's outbox sweep and the import
recover task find the committed work in the database: every event arrives, the import completes.
"""

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from tests.drills.stack import (
    SHARED_PG,
    PrivateRedis,
    Stack,
    database_drop,
    database_recreate,
    is_problem,
    lead_body,
    running,
    wait_until,
)
from tests.webhooks.receiver import Received, Receiver, Reply, loopback_receiver

DATABASE = "neuronx_drill_redis"
INLINE = 20


@pytest.fixture
def redis_stack(drill_dir: Path) -> Iterator[tuple[Stack, PrivateRedis]]:
    redis = PrivateRedis(drill_dir)
    try:
        redis.start()
        stack = Stack(
            drill_dir,
            database_url=database_recreate(SHARED_PG, DATABASE),
            cache_url=redis.url(0),
            broker_url=redis.url(1),
        )
        stack.migrate()
        with running(stack):
            yield stack, redis
    finally:
        redis.stop()
        database_drop(SHARED_PG, DATABASE)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with loopback_receiver() as running:
        yield running


def _post(client: httpx.Client, path: str, body: object, key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key or f"r-{uuid.uuid4()}"})


def test_with_redis_down_the_api_serves_and_every_task_runs_once_it_is_back(
    redis_stack: tuple[Stack, PrivateRedis], receiver: Receiver
) -> None:
    stack, redis = redis_stack
    key = stack.tenant("drill-redis")
    tenant_id = stack.tenant_id("drill-redis")
    acked: dict[str, int] = {}
    client = stack.client(key)
    subscription = _post(
        client,
        "/v1/webhook-subscriptions",
        {"url": receiver.url(), "event_types": ["lead.created", "lead_import.completed"]},
    )
    assert subscription.status_code == 201, subscription.text
    signer = Webhook(subscription.json()["secret"])

    in_air = threading.Event()
    release = threading.Event()

    def respond(request: Received) -> Reply:
        signer.verify(request.body, request.headers)
        if not in_air.is_set():
            # The first delivery is still in the air, its task unacknowledged, when Redis dies.
            in_air.set()
            release.wait(30)
        acked[request.headers["webhook-id"]] = acked.get(request.headers["webhook-id"], 0) + 1
        return Reply(200)

    receiver.responder = respond

    # Healthy: limited; the first event's delivery under way.
    before = _post(client, "/v1/leads", lead_body("redis-before"))
    assert before.status_code == 201 and "RateLimit" in before.headers
    assert in_air.wait(30), stack.worker.log()[-3000:] if stack.worker else ""

    redis.kill()
    down_since = time.monotonic()
    release.set()

    # Reads and writes go on, unlimited and without rate-limit headers.
    listed = client.get("/v1/leads")
    assert listed.status_code == 200 and "RateLimit" not in listed.headers
    idempotency_key = f"redis-down-{uuid.uuid4()}"
    created = [_post(client, "/v1/leads", lead_body("redis-down-0"), idempotency_key)]
    created += [_post(client, "/v1/leads", lead_body(f"redis-down-{n}")) for n in range(1, 5)]
    assert [r.status_code for r in created] == [201] * 5, [r.text for r in created]
    assert all("RateLimit" not in r.headers for r in created)
    # Idempotency lives in PostgreSQL: a replay still replays.
    replay = _post(client, "/v1/leads", lead_body("redis-down-0"), idempotency_key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == created[0].json()["id"]
    imported = _post(
        client, "/v1/lead-imports", {"leads": [lead_body(f"inline-{n}") for n in range(INLINE)]}
    )
    assert imported.status_code == 202, imported.text
    job_url = imported.headers["Location"]

    # What the operator sees: not ready, and why; the warnings in the log.
    ready = httpx.get(f"{stack.base_url}/readyz", timeout=30)
    assert is_problem(ready, 503, "service_unavailable")
    checks = ready.json()["checks"]
    assert (checks["database"]["ok"], checks["cache"]["ok"], checks["broker"]["ok"]) == (
        True,
        False,
        False,
    )
    outage = [listed, *created, replay, imported]
    # Promptly: an enqueue gives up after Celery's publish retries, it does not hang.
    slowest = max(r.elapsed.total_seconds() for r in outage)
    assert slowest < 20, slowest
    records = stack.log_records()
    messages = [r.get("message") for r in records]
    assert messages.count("rate limiter unavailable; failing open") == 8  # one per request
    assert "event dispatch not enqueued" in messages
    # The import is committed as `queued`: a warning, and recovery enqueues it later.
    assert "lead import not enqueued" in messages
    assert not [r for r in records if r.get("level") in ("ERROR", "CRITICAL")], records
    time.sleep(max(0.0, 3 - (time.monotonic() - down_since)))  # a few seconds of outage
    assert len(acked) <= 1  # nothing new could be delivered meanwhile
    assert client.get(job_url).json()["status"] == "queued"
    # A worker that held an unacknowledged task when the broker went away may exit
    # (docs/faults.md); like a process supervisor, the drill starts it again, and the new one
    # waits for the broker.
    restarts = [stack.supervise_worker()]

    # Redis is back, empty: queued messages are gone; the database still has the work.
    redis.start()
    last_call = [time.monotonic() - 7]

    def import_done() -> bool:
        restarts.append(stack.supervise_worker())
        if time.monotonic() - last_call[0] > 10:
            # What celery beat sends every minute: re-enqueue imports nobody is working on.
            stack.celery_call("gtm_api.tasks.lead_imports_recover")
            last_call[0] = time.monotonic()
        return client.get(job_url).json()["status"] == "completed"

    wait_until(import_done, timeout=90, every=0.5, what="the import completed")
    job = client.get(job_url).json()
    assert job["counts"] == {"received": INLINE, "created": INLINE, "updated": 0, "failed": 0}
    events = {
        event_id
        for (event_id,) in stack.sql(
            "SELECT id FROM webhooks_event WHERE tenant_id = %s", tenant_id
        )
    }
    assert len(events) == 1 + 5 + 1  # lead.created × 6, lead_import.completed
    wait_until(lambda: set(acked) == events, timeout=60, what="every event delivered")
    assert stack.sql("SELECT count(*) FROM gtm_api_lead WHERE tenant_id = %s", tenant_id) == [
        (1 + 5 + INLINE,)
    ]

    # Limiting is back, counted from zero in the new Redis.
    wait_until(
        lambda: "RateLimit" in client.get("/v1/leads").headers, timeout=10, what="limits back"
    )
    assert httpx.get(f"{stack.base_url}/readyz", timeout=30).status_code == 200
    client.close()
    assert not [r for r in stack.log_records() if r.get("message") == "unhandled exception"]
    assert not [line for line in stack.access_log() if line.endswith(" 500")]
    print(
        f"\n{len(outage)} requests during the outage, the slowest answered in {slowest:.2f}s; "
        f"worker restarts: {sum(restarts)}"
    )
