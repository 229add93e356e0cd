"""Drills on the shared services: the Celery worker SIGKILLed (with its pool) halfway through a
bulk import and while webhook deliveries are in the air; a new worker finishes the job with
exact counts and every event arrives (docs/faults.md)."""

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from tests.drills.stack import Stack, lead_body, wait_until
from tests.webhooks.receiver import Received, Receiver, Reply, loopback_receiver

ROWS = 4000
BAD = {n for n in range(1, ROWS + 1) if n % 97 == 0}  # invalid emails: row errors
LEADS = 10


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with loopback_receiver() as running:
        yield running


def _subscribe(stack: Stack, key: str, url: str, event_types: list[str]) -> str:
    with stack.client(key) as client:
        response = client.post(
            "/v1/webhook-subscriptions",
            json={"url": url, "event_types": event_types},
            headers={"Idempotency-Key": f"sub-{uuid.uuid4()}"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def _acknowledged(receiver: Receiver, secret: str, acked: dict[str, int]) -> None:
    """Answer 200, after checking the signature; count the 200s per `webhook-id`."""

    def respond(request: Received) -> Reply:
        Webhook(secret).verify(request.body, request.headers)
        acked[request.headers["webhook-id"]] = acked.get(request.headers["webhook-id"], 0) + 1
        return Reply(200)

    receiver.responder = respond


def _csv() -> bytes:
    rows = [
        f"crm-{n},{'bad-' if n in BAD else ''}row{n}{'' if n in BAD else '@drill-corp.com'},"
        f",First{n},Last,,,drill"
        for n in range(1, ROWS + 1)
    ]
    header = "external_id,email,phone,first_name,last_name,company,country,source"
    return ("\n".join([header, *rows]) + "\n").encode()


def test_a_worker_killed_mid_import_resumes_with_exact_counts(
    shared_stack: Stack, receiver: Receiver
) -> None:
    stack = shared_stack
    key = stack.tenant("drill-import")
    tenant_id = stack.tenant_id("drill-import")
    acked: dict[str, int] = {}
    _acknowledged(
        receiver, _subscribe(stack, key, receiver.url(), ["lead_import.completed"]), acked
    )
    worker = stack.worker
    assert worker is not None and worker.alive()

    with stack.client(key) as client:
        response = client.post(
            "/v1/lead-imports",
            files={"file": ("leads.csv", _csv(), "text/csv")},
            headers={"Idempotency-Key": f"import-{uuid.uuid4()}"},
        )
        assert response.status_code == 202, response.text
        job_url = response.headers["Location"]

        def counts() -> dict[str, int]:
            found = client.get(job_url)
            assert found.status_code == 200, found.text
            job = found.json()
            return {
                **job["counts"],
                "processed": job["progress"]["processed"],
                "status": job["status"],
            }

        def under_way() -> dict[str, int] | None:
            now = counts()
            assert now["status"] in ("queued", "processing"), now
            return now if now["processed"] >= 300 else None

        wait_until(under_way, timeout=60, every=0.02, what="the import under way")
        worker.kill()
        at_kill = counts()
        assert at_kill["status"] == "processing"
        assert 0 < at_kill["processed"] < ROWS, at_kill

        # A new worker; the recover task (celery beat sends it every minute) re-enqueues the job
        # once the dead worker's lease has expired, and the job resumes after its last chunk.
        stack.start_worker()
        last_call = [time.monotonic() - 7]

        def finished() -> dict[str, int] | None:
            if time.monotonic() - last_call[0] > 10:
                stack.celery_call("gtm_api.tasks.lead_imports_recover")
                last_call[0] = time.monotonic()
            now = counts()
            return now if now["status"] not in ("queued", "processing") else None

        done = wait_until(finished, timeout=90, every=0.5, what="the import finished")

    valid = ROWS - len(BAD)
    assert done["status"] == "completed_with_errors"
    assert (done["received"], done["created"], done["updated"], done["failed"]) == (
        ROWS,
        valid,
        0,
        len(BAD),
    )
    [(job_id, attempts)] = stack.sql(
        "SELECT id, attempts FROM gtm_api_leadimport WHERE tenant_id = %s", tenant_id
    )
    assert attempts >= 2  # it really was resumed, not run once
    assert stack.sql("SELECT count(*) FROM gtm_api_lead WHERE tenant_id = %s", tenant_id) == [
        (valid,)
    ]
    error_rows = {
        row
        for (row,) in stack.sql(
            "SELECT row FROM gtm_api_leadimportrowerror WHERE job_id = %s", job_id
        )
    }
    assert error_rows == BAD
    assert stack.sql(
        "SELECT sum(quantity) FROM usage_usageevent WHERE tenant_id = %s AND dimension = %s",
        tenant_id,
        "lead.ingested",
    ) == [(valid,)]
    [(event_id,)] = stack.sql(
        "SELECT id FROM webhooks_event WHERE tenant_id = %s AND type = %s",
        tenant_id,
        "lead_import.completed",
    )
    wait_until(lambda: acked.get(event_id), timeout=30, what="lead_import.completed delivered")


def test_a_worker_killed_mid_delivery_loses_no_event(
    shared_stack: Stack, receiver: Receiver
) -> None:
    stack = shared_stack
    key = stack.tenant("drill-hooks")
    tenant_id = stack.tenant_id("drill-hooks")
    secret = _subscribe(stack, key, receiver.url(), ["lead.created"])
    held = threading.Event()
    release = threading.Event()

    def hold(request: Received) -> Reply:
        held.set()  # an attempt is in the air: its worker is about to die
        release.wait(60)
        return Reply(500, b"too late")

    receiver.responder = hold
    worker = stack.worker
    assert worker is not None and worker.alive()
    with stack.client(key) as client:
        for n in range(LEADS):
            response = client.post(
                "/v1/leads",
                json=lead_body(f"hook-{n}"),
                headers={"Idempotency-Key": f"hook-{n}-{uuid.uuid4()}"},
            )
            assert response.status_code == 201, response.text
    assert held.wait(60), worker.log()[-3000:]
    worker.kill()
    acked: dict[str, int] = {}
    _acknowledged(receiver, secret, acked)
    release.set()

    # A new worker; beat's outbox sweep hands every delivery whose lease died with the old
    # worker (or whose message it took down with it) to the new one.
    stack.start_worker()
    events = {
        event_id
        for (event_id,) in stack.sql(
            "SELECT id FROM webhooks_event WHERE tenant_id = %s AND type = %s",
            tenant_id,
            "lead.created",
        )
    }
    assert len(events) == LEADS
    wait_until(lambda: set(acked) == events, timeout=60, what="every event delivered")
    wait_until(
        lambda: (
            stack.sql(
                "SELECT status, count(*) FROM webhooks_delivery WHERE tenant_id = %s GROUP BY 1",
                tenant_id,
            )
            == [("succeeded", LEADS)]
        ),
        timeout=30,
        what="every delivery recorded as succeeded",
    )
    delivered = [json.loads(r.body) for r in receiver.requests if r.headers["webhook-id"] in acked]
    assert {body["id"] for body in delivered} == events
    assert all(body["type"] == "lead.created" for body in delivered)
