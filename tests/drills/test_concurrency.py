"""Drills on the shared services: one idempotent request from 50 clients, and a rate limit of 5
hit by 20 clients, both against 2 gunicorn worker processes (docs/faults.md)."""

import time
import uuid

import httpx
from django_ratelimit.core import _get_window

from tests.drills.stack import Stack, concurrently, consent, is_problem, lead_body

CLIENTS = 50


def test_fifty_clients_send_one_idempotent_request_and_it_takes_effect_once(
    shared_stack: Stack,
) -> None:
    stack = shared_stack
    key = stack.tenant("drill-idem", write="1000000/m")  # retries of 409s must not hit a 429
    tenant_id = stack.tenant_id("drill-idem")
    body = lead_body("idem", consents=[consent("contact.email")])
    idempotency_key = f"drill-{uuid.uuid4()}"
    clients = [stack.client(key) for _ in range(CLIENTS)]
    answered_before, logged_before = len(stack.access_pids()), stack.log_mark()

    def send(index: int) -> tuple[list[int], httpx.Response]:
        # A client that is told the first request is still in flight retries shortly, as the
        # problem says; it ends with the stored outcome.
        seen = []
        for _ in range(200):
            response = clients[index].post(
                "/v1/leads", json=body, headers={"Idempotency-Key": idempotency_key}
            )
            seen.append(response.status_code)
            if not is_problem(response, 409, "idempotency_key_in_use"):
                return seen, response
            time.sleep(0.1)
        raise AssertionError(f"client {index} never got past 409: {seen}")

    outcomes = concurrently(CLIENTS, send)
    for client in clients:
        client.close()

    finals = [response for _, response in outcomes]
    assert {r.status_code for r in finals} == {201}, [
        r.text for r in finals if r.status_code != 201
    ]
    originals = [r for r in finals if r.headers.get("Idempotent-Replayed") != "true"]
    assert len(originals) == 1
    lead_id = originals[0].json()["id"]
    assert {r.json()["id"] for r in finals} == {lead_id}
    assert all(r.headers["Location"] == f"/v1/leads/{lead_id}" for r in finals)
    in_use = sum(seen.count(409) for seen, _ in outcomes)

    # Exactly one effect: one lead, one consent record, one usage event, one webhook event.
    assert stack.sql("SELECT id FROM gtm_api_lead WHERE tenant_id = %s", tenant_id) == [(lead_id,)]
    assert stack.sql("SELECT count(*) FROM consent_consentrecord WHERE lead_id = %s", lead_id) == [
        (1,)
    ]
    assert stack.sql(
        "SELECT sum(quantity) FROM usage_usageevent WHERE tenant_id = %s AND dimension = %s",
        tenant_id,
        "lead.ingested",
    ) == [(1,)]
    assert stack.sql(
        "SELECT data->'lead'->>'id' FROM webhooks_event WHERE tenant_id = %s AND type = %s",
        tenant_id,
        "lead.created",
    ) == [(lead_id,)]
    assert stack.sql(
        "SELECT state, response_status FROM neuronx_idempotencyrecord WHERE tenant_id = %s",
        tenant_id,
    ) == [("completed", 201)]

    # The race really ran across both worker processes, and nothing failed on the server.
    pids = stack.access_pids_after(answered_before, CLIENTS + in_use)
    assert len(pids) == CLIENTS + in_use
    assert set(pids) == set(stack.server_workers())
    assert not [r for r in stack.log_records(since=logged_before) if r.get("level") == "ERROR"]


def _seconds_left_in_window(stack: Stack, tenant_id: str, period: int) -> float:
    """django-ratelimit counts in fixed windows offset per caller; when does this one end?

    A window is named by its last whole second `w` (`_get_window`): it counts the requests made
    while `int(time.time()) <= w`, so it ends at `w + 1`, not at `w`."""
    [(api_key_id,)] = stack.sql("SELECT id FROM neuronx_apikey WHERE tenant_id = %s", tenant_id)
    return _get_window(f"key:{api_key_id}", period) + 1 - time.time()


def test_twenty_clients_against_a_limit_of_five_get_exactly_five_through(
    shared_stack: Stack,
) -> None:
    stack = shared_stack
    key = stack.tenant("drill-rate", write="5/m")
    tenant_id = stack.tenant_id("drill-rate")
    clients = [stack.client(key) for _ in range(20)]
    answered_before = len(stack.access_pids())
    # The burst must land inside one 60-second window, not straddle two: checked just before it.
    left = _seconds_left_in_window(stack, tenant_id, 60)
    if left < 10:
        time.sleep(left + 0.5)

    def send(index: int) -> httpx.Response:
        return clients[index].post(
            "/v1/leads", json=lead_body(f"rate-{index}"), headers={"Idempotency-Key": f"r-{index}"}
        )

    responses = concurrently(20, send)
    for client in clients:
        client.close()

    created = [r for r in responses if r.status_code == 201]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(created), len(limited)) == (5, 15), [
        (r.status_code, r.headers.get("RateLimit")) for r in responses
    ]
    for response in limited:
        assert is_problem(response, 429, "rate_limited")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["RateLimit-Policy"] == '"write";q=5;w=60'
        assert response.headers["RateLimit"].startswith('"write";r=0;')
    # Each success saw its own count: the counter is shared and incremented atomically.
    remaining = sorted(int(r.headers["RateLimit"].split(";")[1][2:]) for r in created)
    assert remaining == [0, 1, 2, 3, 4]

    assert stack.sql("SELECT count(*) FROM gtm_api_lead WHERE tenant_id = %s", tenant_id) == [(5,)]
    assert set(stack.access_pids_after(answered_before, 20)) == set(stack.server_workers())
    # The limited requests stored nothing: each may be retried with its key after the window.
    assert stack.sql(
        "SELECT count(*) FROM neuronx_idempotencyrecord WHERE tenant_id = %s", tenant_id
    ) == [(5,)]
