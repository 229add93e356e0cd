"""`Idempotency-Key` on every POST and PATCH: claim, replay, reuse, in-flight, retention, races."""

import json
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from consent.models import ConsentRecord
from gtm_api.models import Lead
from neuronx.idempotency import idempotency_purge, request_fingerprint
from neuronx.models import IdempotencyRecord
from neuronx.tasks import idempotency_cleanup
from tests.conftest import Api, lead_body, problem
from usage.models import UsageEvent
from webhooks.models import Event

REPLAYED = "Idempotent-Replayed"


def _fingerprint(body: dict, *, method: str = "POST", path: str = "/v1/leads") -> str:
    return request_fingerprint(
        method=method, path=path, body=json.dumps(body).encode(), content_type="application/json"
    )


def _in_flight(api: Api, key: str, body: dict, *, age: timedelta) -> IdempotencyRecord:
    """A claim as a concurrent (or crashed) request would have left it."""
    return IdempotencyRecord.objects.create(
        tenant=api.tenant,
        key=key,
        fingerprint=_fingerprint(body),
        method="POST",
        path="/v1/leads",
        locked_at=timezone.now() - age,
        request_id="req_first",
    )


# -- the header itself ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_post_without_a_key_is_400_and_writes_nothing(alice):
    problem(
        alice.post("/v1/leads", lead_body(), idempotency_key=None), 400, "idempotency_key_required"
    )
    assert not Lead.objects.exists()
    assert not UsageEvent.objects.exists()
    assert not Event.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_patch_without_a_key_is_400_and_changes_nothing(alice):
    lead = alice.post("/v1/leads", lead_body()).json()
    response = alice.patch(f"/v1/leads/{lead['id']}", {"first_name": "Eve"}, idempotency_key=None)
    problem(response, 400, "idempotency_key_required")
    assert Lead.objects.get().first_name == "Ada"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "k" * 256, "has space", "tab\tkey", "ключ"])
def test_invalid_keys_are_400(alice, key):
    problem(
        alice.post(
            "/v1/leads", lead_body(), headers={"Idempotency-Key": key}, idempotency_key=None
        ),
        400,
        "idempotency_key_required",
    )
    assert not Lead.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["k", "k" * 255, "order:2024-06-01/#7~!"])
def test_keys_of_1_to_255_printable_characters_are_accepted(alice, key):
    assert alice.post("/v1/leads", lead_body(), idempotency_key=key).status_code == 201


@pytest.mark.django_db
def test_reads_do_not_need_a_key(alice):
    assert alice.get("/v1/leads").status_code == 200


# -- replay --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_outcome_and_does_nothing_twice(alice):
    first = alice.post("/v1/leads", lead_body(), idempotency_key="create-ada")
    again = alice.post("/v1/leads", lead_body(), idempotency_key="create-ada")
    assert first.status_code == again.status_code == 201
    assert not first.has_header(REPLAYED)
    assert again[REPLAYED] == "true"
    assert again.content == first.content
    assert again["Location"] == first["Location"]
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    # The replay is a new request: its own request id and rate-limit state.
    assert again["X-Request-ID"] != first["X-Request-ID"]
    assert again.has_header("RateLimit")
    assert Lead.objects.count() == 1
    assert UsageEvent.objects.count() == 1
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_json_key_order_and_whitespace_do_not_change_the_request(alice):
    body = lead_body()
    first = alice.post("/v1/leads", raw=json.dumps(body), idempotency_key="k1")
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    assert reordered != json.dumps(body)
    again = alice.post("/v1/leads", raw=reordered, idempotency_key="k1")
    assert first.status_code == 201
    assert again.status_code == 201 and again[REPLAYED] == "true"
    assert again.json() == first.json()
    assert Lead.objects.count() == 1


@pytest.mark.django_db
def test_patch_is_replayed_too(alice):
    lead = alice.post("/v1/leads", lead_body()).json()
    first = alice.patch(f"/v1/leads/{lead['id']}", {"job_title": "CTO"}, idempotency_key="p1")
    again = alice.patch(f"/v1/leads/{lead['id']}", {"job_title": "CTO"}, idempotency_key="p1")
    assert first.status_code == again.status_code == 200
    assert again[REPLAYED] == "true" and again.content == first.content
    assert Event.objects.filter(type="lead.updated").count() == 1


@pytest.mark.django_db
def test_a_4xx_outcome_is_stored_and_replayed(alice):
    bad = lead_body(email="not-an-email")
    first = alice.post("/v1/leads", bad, idempotency_key="bad-1")
    body = problem(first, 422, "validation_error")
    record = IdempotencyRecord.objects.get(key="bad-1")
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.response_status == 422
    again = alice.post("/v1/leads", bad, idempotency_key="bad-1")
    assert again.status_code == 422
    assert again[REPLAYED] == "true"
    assert again["Content-Type"] == "application/problem+json"
    assert again.json() == body
    # Fixing the body is a new request: it needs a new key.
    problem(
        alice.post("/v1/leads", lead_body(), idempotency_key="bad-1"), 422, "idempotency_key_reused"
    )
    assert alice.post("/v1/leads", lead_body(), idempotency_key="bad-2").status_code == 201


@pytest.mark.django_db
def test_an_authentication_failure_does_not_consume_the_key(alice, anonymous):
    problem(
        anonymous.post("/v1/leads", lead_body(), idempotency_key="k"), 401, "authentication_failed"
    )
    response = alice.post("/v1/leads", lead_body(), idempotency_key="k")
    assert response.status_code == 201 and not response.has_header(REPLAYED)


@pytest.mark.django_db
def test_a_long_request_target_is_not_a_server_fault(alice):
    # The server lets request lines of up to 8 KiB through (`neuronx.gunicorn_conf`).
    target = "/v1/leads?utm=" + "a" * 3000
    first = alice.post(target, lead_body(), idempotency_key="long")
    assert first.status_code < 500, first.content
    again = alice.post(target, lead_body(), idempotency_key="long")
    assert (again.status_code, again.get(REPLAYED)) == (first.status_code, "true")


# -- reuse ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_422_reused(alice):
    first = alice.post("/v1/leads", lead_body(), idempotency_key="k")
    body = problem(
        alice.post("/v1/leads", lead_body(first_name="Augusta"), idempotency_key="k"),
        422,
        "idempotency_key_reused",
    )
    assert "POST /v1/leads" in body["detail"]
    assert Lead.objects.get().id == first.json()["id"]
    assert Lead.objects.get().first_name == "Ada"


@pytest.mark.django_db
def test_same_key_on_a_different_path_or_method_is_422_reused(alice):
    lead = alice.post("/v1/leads", lead_body(), idempotency_key="k").json()
    problem(
        alice.patch(f"/v1/leads/{lead['id']}", lead_body(), idempotency_key="k"),
        422,
        "idempotency_key_reused",
    )
    consent = {
        "scope": "contact.email",
        "granted": True,
        "captured_at": "2026-01-01T00:00:00Z",
        "source": "web_form",
    }
    problem(
        alice.post(f"/v1/leads/{lead['id']}/consents", consent, idempotency_key="k"),
        422,
        "idempotency_key_reused",
    )
    assert Lead.objects.get().first_name == "Ada"
    assert not ConsentRecord.objects.exists()


@pytest.mark.django_db
def test_keys_are_scoped_per_tenant(alice, bob):
    mine = alice.post("/v1/leads", lead_body(), idempotency_key="shared")
    theirs = bob.post("/v1/leads", lead_body(first_name="Bob"), idempotency_key="shared")
    assert mine.status_code == theirs.status_code == 201
    assert not theirs.has_header(REPLAYED)
    assert theirs.json()["id"] != mine.json()["id"]
    assert Lead.objects.get(tenant=bob.tenant).first_name == "Bob"
    assert IdempotencyRecord.objects.filter(key="shared").count() == 2


# -- in flight -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_key_still_in_flight_is_409_in_use(alice):
    record = _in_flight(alice, "busy", lead_body(), age=timedelta(seconds=1))
    problem(
        alice.post("/v1/leads", lead_body(), idempotency_key="busy"), 409, "idempotency_key_in_use"
    )
    assert not Lead.objects.exists()
    record.refresh_from_db()
    assert record.state == IdempotencyRecord.State.IN_FLIGHT
    assert record.request_id == "req_first"


@pytest.mark.django_db
def test_an_in_flight_key_with_a_different_body_is_422_reused(alice):
    _in_flight(alice, "busy", lead_body(), age=timedelta(seconds=1))
    problem(
        alice.post("/v1/leads", lead_body(first_name="Eve"), idempotency_key="busy"),
        422,
        "idempotency_key_reused",
    )


@pytest.mark.django_db
def test_a_stale_in_flight_claim_is_taken_over(alice):
    stale = timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS + 5)
    record = _in_flight(alice, "crashed", lead_body(), age=stale)
    response = alice.post(
        "/v1/leads", lead_body(), idempotency_key="crashed", headers={"X-Request-ID": "req-retry"}
    )
    assert response.status_code == 201, response.content
    assert not response.has_header(REPLAYED)
    record.refresh_from_db()
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.request_id == "req-retry"
    assert json.loads(record.response_body) == response.json()
    assert IdempotencyRecord.objects.count() == 1
    assert Lead.objects.count() == 1


@pytest.mark.django_db
def test_a_claim_just_inside_the_lock_window_is_not_taken_over(alice):
    fresh = timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS - 30)
    _in_flight(alice, "slow", lead_body(), age=fresh)
    problem(
        alice.post("/v1/leads", lead_body(), idempotency_key="slow"), 409, "idempotency_key_in_use"
    )


# -- retention -----------------------------------------------------------------------------------


def _records_aged(api: Api, hours: dict[str, float]) -> None:
    for key, age in hours.items():
        record = _in_flight(api, key, {"k": key}, age=timedelta(0))
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            created_at=timezone.now() - timedelta(hours=age)
        )


@pytest.mark.django_db
def test_purge_removes_records_past_retention_and_keeps_newer_ones(alice, bob):
    assert settings.IDEMPOTENCY_RETENTION_HOURS >= 24
    retention = settings.IDEMPOTENCY_RETENTION_HOURS
    _records_aged(alice, {"old": retention + 1, "new": retention - 1, "now": 0})
    _records_aged(bob, {"old": retention + 48})
    assert idempotency_purge() == 2
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new", "now"]


@pytest.mark.django_db
def test_purge_honours_an_explicit_retention(alice):
    _records_aged(alice, {"a": 3, "b": 1})
    assert idempotency_purge(older_than=timedelta(hours=2)) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["b"]


@pytest.mark.django_db
def test_a_purged_key_is_a_new_request_again(alice):
    alice.post("/v1/leads", lead_body(email="one@acme-corp.com"), idempotency_key="k")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(days=2))
    idempotency_purge()
    response = alice.post("/v1/leads", lead_body(email="two@acme-corp.com"), idempotency_key="k")
    assert response.status_code == 201 and not response.has_header(REPLAYED)


@pytest.mark.django_db
def test_cleanup_task_runs_and_is_scheduled(alice):
    _records_aged(alice, {"old": settings.IDEMPOTENCY_RETENTION_HOURS + 1, "new": 1})
    assert idempotency_cleanup.delay().get(timeout=10) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    scheduled = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "neuronx.tasks.idempotency_cleanup" in scheduled


# -- races (threads, real transactions: run on SQLite and on PostgreSQL) -------------------------


def _fire(api: Api, bodies_and_keys: list[tuple[dict, str]]) -> list:
    """Send every (body, key) POST /v1/leads at once, one thread and one client each."""
    barrier = threading.Barrier(len(bodies_and_keys))
    responses: list = [None] * len(bodies_and_keys)
    failures: list[BaseException] = []

    def worker(index: int, body: dict, key: str) -> None:
        try:
            client = Api(client=Client(), key=api.key)
            barrier.wait(timeout=10)
            responses[index] = client.post("/v1/leads", body, idempotency_key=key)
        except BaseException as exc:  # reported below, not swallowed
            failures.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(i, body, key))
        for i, (body, key) in enumerate(bodies_and_keys)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert all(response is not None for response in responses)
    return responses


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_lead(alice):
    responses = _fire(alice, [(lead_body(), "race-key")] * 12)
    created = [r for r in responses if r.status_code == 201]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_use) == 12, [(r.status_code, r.content) for r in responses]
    for response in in_use:
        problem(response, 409, "idempotency_key_in_use")
    originals = [r for r in created if not r.has_header(REPLAYED)]
    assert len(originals) == 1
    assert all(r.content == originals[0].content for r in created)
    assert all(r[REPLAYED] == "true" for r in created if r is not originals[0])
    assert Lead.objects.count() == 1
    assert UsageEvent.objects.count() == 1
    assert Event.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_email_make_one_lead(alice):
    responses = _fire(alice, [(lead_body(), f"email-race-{i}") for i in range(12)])
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, [(r.status_code, r.content) for r in responses]
    lead_id = created[0].json()["id"]
    for response in responses:
        if response is not created[0]:
            assert problem(response, 409, "lead_exists")["existing_id"] == lead_id
    assert list(Lead.objects.values_list("id", flat=True)) == [lead_id]
    assert UsageEvent.objects.count() == 1
    assert Event.objects.count() == 1
