"""A worker that dies mid-import loses nothing and duplicates nothing: the job resumes from its
last committed chunk. The death is simulated in-process; test_imports_worker.py kills a real one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from gtm_api.models import Lead, LeadImport, LeadImportRowError
from gtm_api.services import imports
from gtm_api.services.imports import lead_import_run, lead_imports_recover
from tests.gtm_api.importing import (
    csv_bytes,
    row_errors,
    upload,
)
from usage.models import UsageEvent
from webhooks.models import Event

pytestmark = pytest.mark.usefixtures("media_root")

# Rows 1–9 in chunks of 2: a bad email in the first chunk, row 8 repeats row 1's email (the
# duplicate is only known by replaying rows 1–7 after a resume), a bad phone in the last chunk.
ROWS = csv_bytes(
    "crm-1,ada@acme-corp.com,,A,B,,,csv",
    "crm-2,bad-email,,A,B,,,csv",
    "crm-3,c@acme-corp.com,,A,B,,,csv",
    "crm-4,d@acme-corp.com,,A,B,,,csv",
    "crm-5,e@acme-corp.com,,A,B,,,csv",
    "crm-6,f@acme-corp.com,,A,B,,,csv",
    "crm-7,g@acme-corp.com,,A,B,,,csv",
    "crm-8,ADA@acme-corp.com,,A,B,,,csv",
    "crm-9,i@acme-corp.com,12345,A,B,,,csv",
)
EXPECTED_ERRORS = [
    (2, "email", "invalid_email"),
    (8, "email", "duplicate_in_file"),
    (9, "phone", "invalid_phone"),
]


class WorkerDied(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the import may catch it."""


@pytest.fixture
def queued(alice, settings):
    settings.LEAD_IMPORT_CHUNK_ROWS = 2
    response = upload(alice, ROWS)  # not run: no on-commit callbacks are executed here
    assert response.status_code == 202
    return LeadImport.objects.get(pk=response.json()["id"])


def die_on_call(monkeypatch, name: str, call: int) -> None:
    """Make `imports.<name>` die on its `call`-th call (earlier calls run normally)."""
    real = getattr(imports, name)
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise WorkerDied
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, name, dying)


def expire_lease(job: LeadImport) -> None:
    LeadImport.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def assert_imported_exactly_once(alice, job: LeadImport) -> None:
    job.refresh_from_db()
    assert (job.status, job.received, job.created, job.updated, job.failed) == (
        "completed_with_errors",
        9,
        6,
        0,
        3,
    )
    assert row_errors(alice, job.id) == EXPECTED_ERRORS  # each once
    assert sorted(Lead.objects.values_list("external_id", flat=True)) == [
        f"crm-{n}" for n in (1, 3, 4, 5, 6, 7)
    ]
    assert [u.quantity for u in UsageEvent.objects.all()] == [6]
    assert Event.objects.filter(type="lead_import.completed", data__import__id=job.id).count() == 1


@pytest.mark.django_db
def test_death_between_chunks_resumes_after_the_last_committed_one(alice, queued, monkeypatch):
    die_on_call(monkeypatch, "_chunk_commit", 3)
    with pytest.raises(WorkerDied):
        lead_import_run(import_id=queued.id)
    queued.refresh_from_db()
    assert (queued.status, queued.processed, queued.created, queued.failed) == (
        "processing",
        4,
        3,
        1,
    )
    monkeypatch.undo()

    # Its lease is still live: a second worker must not step in yet.
    assert lead_import_run(import_id=queued.id) == "busy"
    assert LeadImport.objects.get(pk=queued.pk).processed == 4

    expire_lease(queued)
    assert lead_import_run(import_id=queued.id) == "done"
    assert_imported_exactly_once(alice, queued)
    assert LeadImport.objects.get(pk=queued.pk).attempts == 2


@pytest.mark.django_db
def test_death_inside_a_chunk_rolls_that_chunk_back_and_redoes_it(alice, queued, monkeypatch):
    # Dies after the second chunk's leads are written, before its errors and counts commit.
    die_on_call(monkeypatch, "errors_write", 2)
    with pytest.raises(WorkerDied):
        lead_import_run(import_id=queued.id)
    queued.refresh_from_db()
    assert queued.processed == 2
    assert sorted(Lead.objects.values_list("external_id", flat=True)) == ["crm-1"]
    monkeypatch.undo()
    expire_lease(queued)
    assert lead_import_run(import_id=queued.id) == "done"
    assert_imported_exactly_once(alice, queued)


@pytest.mark.django_db
def test_a_worker_that_lost_its_lease_stops_writing(alice, queued, monkeypatch):
    real = imports._chunk_commit

    def taken_over_after_first(job, *args):
        result = real(job, *args)
        LeadImport.objects.filter(pk=job.id).update(lease_token="another-worker")
        return result

    monkeypatch.setattr(imports, "_chunk_commit", taken_over_after_first)
    assert lead_import_run(import_id=queued.id) == "lost"
    assert LeadImport.objects.get(pk=queued.pk).processed == 2
    assert Lead.objects.count() == 1


@pytest.mark.django_db
def test_recover_requeues_jobs_whose_worker_died_or_whose_message_was_lost(
    alice, queued, monkeypatch, settings
):
    die_on_call(monkeypatch, "_chunk_commit", 2)
    with pytest.raises(WorkerDied):
        lead_import_run(import_id=queued.id)
    monkeypatch.undo()
    lost = LeadImport.objects.create(
        tenant=alice.tenant, source="inline", format="ndjson", mode="create"
    )
    assert lead_imports_recover() == []  # the lease is live, the queued job is fresh
    expire_lease(queued)
    old = timezone.now() - timedelta(seconds=settings.LEAD_IMPORT_LEASE_SECONDS + 1)
    LeadImport.objects.filter(pk=lost.pk).update(created_at=old)
    LeadImport.objects.filter(pk=lost.pk).update(file="")  # its file never made it either
    recovered = lead_imports_recover()  # eager: the re-enqueued tasks run now
    assert sorted(recovered) == sorted([queued.id, lost.id])
    assert_imported_exactly_once(alice, queued)
    lost.refresh_from_db()
    assert lost.status == "failed"  # nothing to read: a precise failure, not a stuck job
    assert lost.error_code == "file_missing"


@pytest.mark.django_db(transaction=True)
def test_resume_outside_a_test_transaction(alice, settings, monkeypatch):
    """Committed for real (on PostgreSQL through the writer thread): the same guarantees."""
    settings.LEAD_IMPORT_CHUNK_ROWS = 2
    response = upload(alice, ROWS)  # autocommit: the eager task runs at once
    job = LeadImport.objects.get(pk=response.json()["id"])
    assert_imported_exactly_once(alice, job)

    LeadImport.objects.all().delete()
    Lead.objects.all().delete()
    UsageEvent.objects.all().delete()
    Event.objects.all().delete()
    die_on_call(monkeypatch, "_chunk_commit", 3)
    with pytest.raises(WorkerDied):
        upload(alice, ROWS)
    monkeypatch.undo()
    job = LeadImport.objects.get()
    assert job.processed == 4
    assert LeadImportRowError.objects.filter(job=job).count() == 1
    expire_lease(job)
    assert lead_import_run(import_id=job.id) == "done"
    assert_imported_exactly_once(alice, job)
