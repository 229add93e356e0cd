from datetime import timedelta

import pytest
from django.utils import timezone

from neuronx.models import IdempotencyRecord
from neuronx.tasks import idempotency_cleanup
from tests.factories import TenantFactory
from tests.worker import celery_worker


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_idempotency_cleanup(tmp_path):
    tenant = TenantFactory()
    old = IdempotencyRecord.objects.create(
        tenant=tenant,
        key="old",
        fingerprint="x",
        method="POST",
        path="/v1/leads",
        locked_at=timezone.now(),
    )
    IdempotencyRecord.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    IdempotencyRecord.objects.create(
        tenant=tenant,
        key="new",
        fingerprint="x",
        method="POST",
        path="/v1/leads",
        locked_at=timezone.now(),
    )
    with celery_worker(tmp_path) as worker:
        idempotency_cleanup.delay()
        worker.wait_for(lambda: not IdempotencyRecord.objects.filter(key="old").exists())
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
