"""A 5xx releases its Idempotency-Key claim even when the database is what failed.

The release of a claim whose request failed because the database went away cannot reach the
database either; it is kept and made before the process's next claim (docs/faults.md, the
PostgreSQL drill), instead of leaving the key `in use` for IDEMPOTENCY_LOCK_SECONDS.
"""

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection

from neuronx.idempotency import idempotency_claim, idempotency_release
from neuronx.models import IdempotencyRecord
from tests.conftest import Api, lead_body

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_unreachable() -> Iterator[None]:
    """Point the connection at a database that is not there, as during an outage."""
    connection.close()
    saved = dict(connection.settings_dict)
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent/neuronx/unreachable.sqlite3"
    else:
        with socket.socket() as probe:  # a loopback port nothing listens on
            probe.bind(("127.0.0.1", 0))
            connection.settings_dict["HOST"] = "127.0.0.1"
            connection.settings_dict["PORT"] = str(probe.getsockname()[1])
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def _claim(api: Api, key: str) -> IdempotencyRecord:
    claim = idempotency_claim(
        tenant=api.tenant,
        key=key,
        fingerprint=key,
        method="POST",
        path="/v1/leads",
        request_id=f"req-{key}",
    )
    assert isinstance(claim, IdempotencyRecord)
    return claim


def test_a_release_that_cannot_reach_the_database_is_made_before_the_next_claim(alice):
    cut_off = _claim(alice, "cut-off")
    with database_unreachable():
        idempotency_release(record=cut_off)  # the 5xx path: must not raise
    assert IdempotencyRecord.objects.get(pk=cut_off.pk).state == "in_flight"

    _claim(alice, "next-request")  # any claim of this process, once the database answers

    assert not IdempotencyRecord.objects.filter(pk=cut_off.pk).exists()
    response = alice.post("/v1/leads", lead_body(), idempotency_key="cut-off")
    assert response.status_code == 201, response.content  # processed as new, not 409
    assert not response.has_header("Idempotent-Replayed")


def test_a_deferred_release_spares_a_claim_taken_over_or_completed_since(alice):
    taken_over, completed = _claim(alice, "taken-over"), _claim(alice, "completed")
    with database_unreachable():
        idempotency_release(record=taken_over)
        idempotency_release(record=completed)
    IdempotencyRecord.objects.filter(pk=taken_over.pk).update(
        locked_at=taken_over.locked_at + timedelta(seconds=1)
    )
    IdempotencyRecord.objects.filter(pk=completed.pk).update(state="completed")

    _claim(alice, "next-request")

    assert IdempotencyRecord.objects.filter(pk__in=[taken_over.pk, completed.pk]).count() == 2
