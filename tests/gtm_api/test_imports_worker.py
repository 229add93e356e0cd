"""A real Celery worker imports a file, is killed mid-job, resumes, and re-imports in upsert mode.

The worker runs on the test database and a real broker (tests/worker.py: a filesystem broker
under `make test`, Redis in CI); its pool processes are SIGKILLed while the job is halfway, and
the job must end with exact counts: nothing lost, nothing written twice.
"""

import os
import signal
from pathlib import Path

import pytest

from gtm_api.models import Lead, LeadImport, LeadImportRowError
from tests.conftest import make_api
from tests.gtm_api.importing import csv_bytes, upload
from tests.worker import celery_worker
from usage.models import UsageEvent
from webhooks.models import Event

ROWS = 2500
BAD = {n for n in range(1, ROWS + 1) if n % 97 == 0}  # invalid emails


def _content() -> bytes:
    return csv_bytes(
        *(
            f"crm-{n},{'bad-' if n in BAD else ''}lead{n}{'' if n in BAD else '@acme-corp.com'},"
            f",First{n},Last,,,worker"
            for n in range(1, ROWS + 1)
        )
    )


def _busiest_child(pid: int) -> int:
    """The pool process running the import: the child of the worker with the most CPU time.

    Only that one is killed: an idle pool process may be holding the pool's queue lock, and
    killing it would wedge the pool rather than simulate a crashed job.
    """
    cpu = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # `pid (comm) state ppid … utime stime …`; comm may hold spaces: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            cpu[int(entry.name)] = int(fields[11]) + int(fields[12])
    assert cpu, "the worker has no pool processes"
    return max(cpu, key=cpu.__getitem__)


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_resumes_the_import_with_exact_counts(tmp_path, monkeypatch, settings):
    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    monkeypatch.setenv("MEDIA_ROOT", str(media))  # the worker reads what the API stored
    monkeypatch.setenv("LEAD_IMPORT_CHUNK_ROWS", "20")
    monkeypatch.setenv("LEAD_IMPORT_LEASE_SECONDS", "2")
    # Validate in a child of the pool process, as a large file would be.
    monkeypatch.setenv("LEAD_IMPORT_PARALLEL_MIN_ROWS", "1")
    alice = make_api("alice")
    content = _content()
    valid = ROWS - len(BAD)

    with celery_worker(tmp_path) as worker:
        response = upload(alice, content)
        assert response.status_code == 202, response.content
        job_id = response.json()["id"]

        def under_way() -> LeadImport | None:
            # Some chunks committed, and enough left that the kill lands before the end.
            job = LeadImport.objects.get(pk=job_id)
            return job if 0 < job.processed <= ROWS - 200 else None

        before = worker.wait_for(under_way)
        assert before.status == "processing"
        os.kill(_busiest_child(worker.process.pid), signal.SIGKILL)

        job = worker.wait_for(lambda: (j := LeadImport.objects.get(pk=job_id)).is_finished and j)
        assert job.attempts >= 2, "the job was not resumed by another process"
        assert (job.status, job.received, job.created, job.updated, job.failed) == (
            "completed_with_errors",
            ROWS,
            valid,
            0,
            len(BAD),
        )
        assert Lead.objects.filter(tenant=alice.tenant).count() == valid
        errors = LeadImportRowError.objects.filter(job=job)
        assert sorted(errors.values_list("row", flat=True)) == sorted(BAD)  # each exactly once
        assert [u.quantity for u in UsageEvent.objects.filter(tenant=alice.tenant)] == [valid]
        assert Event.objects.filter(type="lead_import.completed").count() == 1

        # The same file again, as upserts: every lead updated, none duplicated.
        again = upload(alice, content, mode="upsert")
        assert again.status_code == 202, again.content
        upserted = worker.wait_for(
            lambda: (j := LeadImport.objects.get(pk=again.json()["id"])).is_finished and j
        )
        assert (upserted.created, upserted.updated, upserted.failed) == (0, valid, len(BAD))
        assert Lead.objects.filter(tenant=alice.tenant).count() == valid
