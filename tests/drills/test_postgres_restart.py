"""Drill: PostgreSQL restarted, then crashed and down for seconds, while clients write leads.

Runs on a private PostgreSQL cluster and a private Redis (the shared services are never
stopped). Every request must get either its success or a `503 service_unavailable` problem with
`Retry-After`, never a 500; a 503'd request retried with its Idempotency-Key must then succeed
exactly once; no lead may be half-written; the same API processes serve again afterwards.
"""

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.drills.stack import (
    PrivatePostgres,
    PrivateRedis,
    Stack,
    consent,
    is_problem,
    lead_body,
    running,
    wait_until,
)

WRITERS = 6


@pytest.fixture
def private_stack(drill_dir: Path) -> Iterator[tuple[Stack, PrivatePostgres]]:
    postgres = PrivatePostgres()
    redis = PrivateRedis(drill_dir)
    try:
        postgres.start()
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE neuronx")
        redis.start()
        stack = Stack(
            drill_dir,
            database_url=postgres.url("neuronx"),
            cache_url=redis.url(0),
            broker_url=redis.url(1),
            # Persistent connections: after the restart every worker holds a dead one.
            extra_env={"DATABASE_CONN_MAX_AGE": "60"},
        )
        stack.migrate()
        with running(stack, worker=False, beat=False):
            yield stack, postgres
    finally:
        redis.stop()
        postgres.remove()


@dataclass
class Sent:
    key: str
    body: dict[str, object]
    responses: list[httpx.Response] = field(default_factory=list)


def _retry_after_is_problem_503(response: httpx.Response) -> bool:
    return (
        is_problem(response, 503, "service_unavailable")
        and int(response.headers["Retry-After"]) > 0
    )


def _served_since(sent: list[Sent], reads: list[httpx.Response]) -> bool:
    created = any(r.responses and r.responses[0].status_code == 201 for r in list(sent))
    return created and any(r.status_code == 200 for r in list(reads))


def test_requests_cut_off_by_a_database_restart_fail_cleanly_and_retry_exactly_once(
    private_stack: tuple[Stack, PrivatePostgres],
) -> None:
    stack, postgres = private_stack
    # Load, not pacing, is the point here: limits far above what the clients can send.
    key = stack.tenant("drill-pg", read="1000000/m", write="1000000/m")
    tenant_id = stack.tenant_id("drill-pg")
    workers_before = stack.server_workers()
    sent: list[Sent] = []
    reads: list[httpx.Response] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def write(writer: int) -> None:
        with stack.client(key) as client:
            number = 0
            while not stop.is_set():
                number += 1
                body = lead_body(
                    f"pg-{writer}-{number}",
                    consents=[consent("contact.email"), consent("data.profiling")],
                )
                request = Sent(key=f"pg-{writer}-{number}-{uuid.uuid4()}", body=body)
                with lock:
                    sent.append(request)
                try:
                    request.responses.append(
                        client.post(
                            "/v1/leads", json=body, headers={"Idempotency-Key": request.key}
                        )
                    )
                except httpx.HTTPError as exc:
                    errors.append(exc)

    def read() -> None:
        with stack.client(key) as client:
            while not stop.is_set():
                try:
                    reads.append(client.get("/v1/leads", params={"limit": 5}))
                except httpx.HTTPError as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        postgres.restart("fast")  # a clean restart: sessions terminated, back at once
        time.sleep(1.5)
        postgres.stop("immediate")  # a crash, then seconds of downtime and crash recovery
        time.sleep(2)
        postgres.start()
        since = len(sent), len(reads)
        wait_until(
            lambda: _served_since(sent[since[0] :], reads[since[1] :]),
            timeout=30,
            what="a write and a read answered after the restart",
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    # What the clients saw: successes or clean 503 problems; nothing else.
    assert not errors, errors[:5]
    first = [request.responses[0] for request in sent]
    unavailable = [r for r in first + reads if r.status_code == 503]
    assert unavailable, "the restart never reached a request"
    assert all(_retry_after_is_problem_503(r) for r in unavailable)
    assert {r.status_code for r in first} <= {201, 503}, [
        r.text for r in first if r.status_code not in (201, 503)
    ]
    assert {r.status_code for r in reads} <= {200, 503}
    assert first[-1].status_code == 201 and reads[-1].status_code == 200  # serving again

    # Every cut-off request, retried with its key, succeeds exactly once.
    with stack.client(key) as client:
        for request in sent:
            if request.responses[0].status_code == 201:
                continue

            def retried(request: Sent = request) -> httpx.Response | None:
                response = client.post(
                    "/v1/leads", json=request.body, headers={"Idempotency-Key": request.key}
                )
                request.responses.append(response)
                return response if response.status_code == 201 else None

            try:
                wait_until(retried, timeout=30, every=0.5, what=f"retry of {request.key}")
            except AssertionError:
                raise AssertionError(
                    [(r.status_code, r.text[:300]) for r in request.responses[:3]]
                    + [(r.status_code, r.text[:300]) for r in request.responses[-2:]]
                ) from None
            # Before the success: the outage's 503s, or, where the retry reached the other
            # process before the cut-off one had released its claim, `idempotency_key_in_use`
            # (docs/faults.md): a refusal to run it twice, never a second effect.
            assert all(
                r.status_code == 503 or is_problem(r, 409, "idempotency_key_in_use")
                for r in request.responses[:-1]
            ), [r.text for r in request.responses]

    # Nothing lost, nothing twice, nothing half-written: one lead per request, each with its
    # consents, its `lead.created` event, its usage and its stored outcome.
    created = {request.body["email"]: request.responses[-1].json()["id"] for request in sent}
    leads = dict(stack.sql("SELECT email, id FROM gtm_api_lead WHERE tenant_id = %s", tenant_id))
    assert leads == created
    assert (
        stack.sql(
            "SELECT l.id FROM gtm_api_lead l WHERE l.tenant_id = %s AND ("
            " (SELECT count(*) FROM consent_consentrecord c WHERE c.lead_id = l.id) != 2"
            " OR (SELECT count(*) FROM webhooks_event e WHERE e.type = 'lead.created'"
            "     AND e.data->'lead'->>'id' = l.id) != 1)",
            tenant_id,
        )
        == []
    )
    assert stack.sql(
        "SELECT sum(quantity) FROM usage_usageevent WHERE tenant_id = %s AND dimension = %s",
        tenant_id,
        "lead.ingested",
    ) == [(len(sent),)]
    assert stack.sql(
        "SELECT state, count(*) FROM neuronx_idempotencyrecord WHERE tenant_id = %s GROUP BY 1",
        tenant_id,
    ) == [("completed", len(sent))]

    # The same API processes answered throughout: no restart, no crash, no 500.
    assert stack.server_workers() == workers_before
    records = stack.log_records()
    assert not [r for r in records if r.get("message") == "unhandled exception"]
    assert any(r.get("message") == "database unavailable" for r in records)
    assert not [r for r in stack.access_log() if r.endswith(" 500")]
    print(
        f"\n{len(sent)} writes, {len(reads)} reads; "
        f"{sum(r.status_code == 503 for r in first)} writes and "
        f"{sum(r.status_code == 503 for r in reads)} reads answered 503; "
        f"retries: {sum(len(r.responses) - 1 for r in sent)}; claim releases deferred: "
        f"{sum(r.get('message', '').startswith('idempotency claim release') for r in records)}"
    )
