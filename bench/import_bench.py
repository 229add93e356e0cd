"""Bulk import throughput: the lead import pipeline vs a raw COPY of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neuronx_imp_bench SECRET_KEY=x \\
        .venv/bin/python bench/import_bench.py [--rows 200000] [--repeat 3] [--phones 0.7]

Generates N realistic CSV rows (70 % with a phone number in national or international format,
about 2.5 % dirty: bad emails and phones, duplicates inside the file, a missing first name,
ragged rows, Latin-1 bytes), then

1. imports the file through the whole pipeline — `lead_import_submit` (storing the upload) and
   the job a Celery worker runs (counting pass, plain-Python validation, COPY, row errors,
   usage, event), eagerly in this process — and checks the counts are exact;
2. COPYs the same clean rows (only the valid ones, already normalised, with their ids) into a
   scratch copy of the leads table — `CREATE TABLE … (LIKE gtm_api_lead INCLUDING ALL)` plus the
   table's foreign keys, which LIKE leaves out: the same columns, check constraints, indexes and
   foreign keys — in one transaction, with psycopg's `write_row`, once in text and once in
   binary format; the faster of the two is the baseline;
3. re-imports the file in `upsert` mode and checks every lead was updated, none duplicated.

Prints rows/s for each (the median of the runs) and the ratio pipeline / COPY (target ≥ 0.5),
and, for scale, the rate of reading and validating the file alone on one CPU. Needs
PostgreSQL; the database must be migrated (`manage.py migrate`). Everything the bench writes is
deleted at the end (a tenant of its own, the scratch table, the stored files).
"""

import argparse
import csv
import gc
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neuronx.settings")

import django

django.setup()

import phonenumbers  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.files.uploadedfile import UploadedFile  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg.adapt import Dumper  # noqa: E402
from psycopg.postgres import types as pg_types  # noqa: E402
from psycopg.pq import Format  # noqa: E402

from gtm_api.models import LeadImport  # noqa: E402
from gtm_api.services.imports import lead_import_submit  # noqa: E402
from gtm_api.services.imports_reader import records_read  # noqa: E402
from gtm_api.services.imports_validation import rows_validated  # noqa: E402
from neuronx.context import Actor  # noqa: E402
from neuronx.ids import new_id  # noqa: E402
from neuronx.models import Tenant  # noqa: E402

COLUMNS = [
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "country",
    "source",
    "attributes.utm_source",
    "attributes.employees",
]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
TITLES = ["CTO", "VP Engineering", "Head of Sales", "Founder", "Data Engineer", None]
UTM = ["google", "linkedin", "newsletter", "event", None]


@dataclass
class Generated:
    path: Path
    rows: int
    dirty: int
    clean: list[tuple]  # the stored values of the valid rows, for the COPY baseline


def _phone(rng: random.Random) -> tuple[str, str, str]:
    """(as written in the file, country, E.164) for a valid number in one of four countries."""
    while True:
        country = rng.choice(["US", "GB", "DE", "FR"])
        if country == "US":
            raw = f"+1 ({rng.choice([212, 415, 646, 617])}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        elif country == "GB":
            raw = f"+44 20 7946 {rng.randint(0, 999):04d}"
        elif country == "DE":
            raw = f"030 {rng.randint(1000000, 9999999)}"
        else:
            raw = f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
        number = phonenumbers.parse(raw, None if raw.startswith("+") else country)
        if phonenumbers.is_valid_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return raw, country, e164


def generate(rows: int, folder: Path, *, phones: float = 0.7, seed: int = 20261128) -> Generated:
    rng = random.Random(seed)
    domains = [f"company{i}-{rng.choice(['io', 'com', 'de', 'co.uk'])}" for i in range(800)]
    path = folder / "leads.csv"
    clean: list[tuple] = []
    dirty = 0
    now = timezone.now()
    with path.open("wb") as out:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        out.write(text.getvalue().encode())
        for i in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            domain = rng.choice(domains).replace("-", ".")
            email = f"{first}.{last}{i}@{domain}"
            phone, country, e164 = _phone(rng) if rng.random() < phones else ("", "", None)
            if not country:
                country = rng.choice(["US", "GB", "DE", "FR", ""])
            company = domain.split(".")[0].title()
            title = rng.choice(TITLES) or ""
            utm = rng.choice(UTM) or ""
            employees = str(rng.randint(1, 5000)) if rng.random() < 0.5 else ""
            values = [
                f"crm-{i}",
                email,
                phone,
                first,
                last,
                company,
                title,
                country,
                "crm_export",
                utm,
                employees,
            ]
            roll = rng.random()
            bad = True
            raw_line: bytes | None = None
            if roll < 0.010:
                values[1] = email.replace("@", " at ")  # invalid_email
            elif roll < 0.015:
                values[2] = "+1 555 0100"  # invalid_phone
            elif roll < 0.020 and clean:
                values[0] = clean[-1][1]  # duplicate_in_file: the external_id of a valid row
            elif roll < 0.0225:
                values[3] = ""  # required first_name missing
            elif roll < 0.0240:
                values = values[:6]  # ragged_row
            elif roll < 0.0250:
                text.truncate(0)
                text.seek(0)
                writer.writerow(values)
                raw_line = text.getvalue().replace(last, last + "\u00e9").encode("latin-1")
            else:
                bad = False
            if raw_line is None:
                text.truncate(0)
                text.seek(0)
                writer.writerow(values)
                raw_line = text.getvalue().encode("utf-8")
            out.write(raw_line)
            if bad:
                dirty += 1
                continue
            attributes = {}
            if utm:
                attributes["utm_source"] = utm
            if employees:
                attributes["employees"] = employees
            clean.append(
                (
                    new_id("lead"),
                    f"crm-{i}",
                    email.lower(),
                    e164,
                    first,
                    last,
                    company,
                    title or None,
                    country or None,
                    "crm_export",
                    json.dumps(attributes),
                    "new",
                    now,
                    now,
                )
            )
    return Generated(path=path, rows=rows, dirty=dirty, clean=clean)


def run_validation(generated: Generated) -> float:
    """Reading and validating the file in this one process, writing nothing: the floor of the
    import's CPU cost per row, for comparison."""
    started = time.perf_counter()
    with generated.path.open("rb") as stream:
        for _ in rows_validated(records_read(stream, fmt="csv")):
            pass
    return time.perf_counter() - started


def run_pipeline(tenant: Tenant, generated: Generated, mode: str) -> tuple[float, LeadImport]:
    actor = Actor.system(tenant, "import_bench")
    started = time.perf_counter()
    with generated.path.open("rb") as handle:
        upload = UploadedFile(
            file=handle,
            name="leads.csv",
            content_type="text/csv",
            size=generated.path.stat().st_size,
        )
        # No broker: the job runs eagerly when the submission commits, as in development.
        job = lead_import_submit(actor=actor, mode=mode, dry_run=False, file=upload)
    elapsed = time.perf_counter() - started
    job.refresh_from_db()
    return elapsed, job


COPY_COLUMNS = (
    "id, external_id, email, phone, first_name, last_name, company, job_title, country, "
    "source, attributes, stage, created_at, updated_at, tenant_id"
)
COPY_TYPES = [
    *["text"] * 10,
    "jsonb",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
]


class JsonText(str):
    """JSON text for a jsonb column of a binary COPY (see `JsonTextDumper`)."""


class JsonTextDumper(Dumper):
    format = Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()  # jsonb's binary format: version 1, then the text


def run_copy(tenant: Tenant, generated: Generated, *, binary: bool) -> float:
    """COPY the clean rows into a fresh table of the leads table's shape, in one transaction."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_lead_copy")
        cursor.execute("CREATE TABLE bench_lead_copy (LIKE gtm_api_lead INCLUDING ALL)")
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'gtm_api_lead'::regclass AND contype = 'f'"
        )
        for (definition,) in cursor.fetchall():
            cursor.execute(f"ALTER TABLE bench_lead_copy ADD {definition}")
    statement = f"COPY bench_lead_copy ({COPY_COLUMNS}) FROM STDIN"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if binary:
            cursor.adapters.register_dumper(JsonText, JsonTextDumper)  # type: ignore[attr-defined]
            statement += " (FORMAT BINARY)"
        with cursor.copy(statement) as copy:  # type: ignore[attr-defined]
            if binary:
                copy.set_types(COPY_TYPES)
            for row in generated.clean:
                copy.write_row((*row, tenant.pk))
    # Autocommit: the COPY has committed (its deferred foreign key checks included) here.
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_lead_copy")
    return elapsed


TABLES_WRITTEN = (
    "gtm_api_leadimportrowerror",
    "gtm_api_leadimport",
    "consent_consentrecord",
    "gtm_api_lead",
    "usage_usageevent",
    "webhooks_event",
)


def cleanup(tenant: Tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM gtm_api_leadimportrowerror WHERE job_id IN "
            "(SELECT id FROM gtm_api_leadimport WHERE tenant_id = %s)",
            [tenant.pk],
        )
        for table in TABLES_WRITTEN[1:]:
            cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM neuronx_tenant WHERE id = %s", [tenant.pk])
    vacuum()


def vacuum() -> None:
    """Clear the dead rows of earlier runs: each import then writes into tables (and indexes)
    as clean as the fresh table of the baseline (autovacuum may be late, or off)."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(TABLES_WRITTEN)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument("--chunk-rows", type=int, default=settings.LEAD_IMPORT_CHUNK_ROWS)
    parser.add_argument(
        "--phones", type=float, default=0.7, help="share of rows with a phone number (0–1)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench tenant's data")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("The bench needs PostgreSQL: set DATABASE_URL=postgres://…", file=sys.stderr)
        return 2
    settings.LEAD_IMPORT_CHUNK_ROWS = args.chunk_rows
    settings.LEAD_IMPORT_MAX_ROWS = max(settings.LEAD_IMPORT_MAX_ROWS, args.rows)
    folder = Path(tempfile.mkdtemp(prefix="import-bench-"))
    settings.MEDIA_ROOT = str(folder / "media")
    try:
        print(f"generating {args.rows} rows …", flush=True)
        generated = generate(args.rows, folder, phones=args.phones)
        # The rows kept for the COPY baseline are not part of an import: keep the collector off
        # them, or they would slow the pipeline down as no worker's heap does.
        gc.freeze()
        size_mb = generated.path.stat().st_size / 1e6
        valid = args.rows - generated.dirty
        print(f"  {size_mb:.1f} MB, {generated.dirty} dirty rows, {valid} valid")
        runs: dict[str, list[float]] = {
            "validation": [],
            "create": [],
            "copy text": [],
            "copy binary": [],
            "upsert": [],
        }
        vacuum()
        for attempt in range(args.repeat):
            runs["validation"].append(run_validation(generated))
            tenant = Tenant.objects.create(slug=f"bench-{new_id('x')[-10:].lower()}", name="Bench")
            try:
                elapsed, job = run_pipeline(tenant, generated, "create")
                counts = (job.status, job.received, job.created, job.updated, job.failed)
                expected = ("completed_with_errors", args.rows, valid, 0, generated.dirty)
                assert counts == expected, f"create: {counts} != {expected}"
                runs["create"].append(elapsed)
                runs["copy text"].append(run_copy(tenant, generated, binary=False))
                runs["copy binary"].append(run_copy(tenant, generated, binary=True))
                upsert_elapsed, job = run_pipeline(tenant, generated, "upsert")
                counts = (job.status, job.received, job.created, job.updated, job.failed)
                expected = ("completed_with_errors", args.rows, 0, valid, generated.dirty)
                assert counts == expected, f"upsert: {counts} != {expected}"
                runs["upsert"].append(upsert_elapsed)
                print(
                    f"  run {attempt + 1}: "
                    + ", ".join(f"{name} {times[-1]:.2f}s" for name, times in runs.items()),
                    flush=True,
                )
            finally:
                if not args.keep:
                    cleanup(tenant)
        median = {name: statistics.median(times) for name, times in runs.items()}
        copy_format = min(("copy text", "copy binary"), key=median.__getitem__)
        validation_rate = args.rows / median["validation"]
        pipeline_rate = args.rows / median["create"]
        copy_rate = valid / median[copy_format]
        upsert_rate = args.rows / median["upsert"]
        print(f"medians of {args.repeat} run(s):")
        print(
            f"validation alone, 1 CPU:  {validation_rate:10,.0f} rows/s  "
            f"({median['validation']:.2f} s)"
        )
        print(
            f"import pipeline (create): {pipeline_rate:10,.0f} rows/s  ({median['create']:.2f} s)"
        )
        for name in ("copy text", "copy binary"):
            print(
                f"raw COPY ({name[5:]}):{' ' * (11 - len(name[5:]))}"
                f"{valid / median[name]:10,.0f} rows/s  ({median[name]:.2f} s)"
                + ("  ← baseline" if name == copy_format else "")
            )
        print(f"import pipeline (upsert): {upsert_rate:10,.0f} rows/s  ({median['upsert']:.2f} s)")
        print(f"ratio import / COPY:      {pipeline_rate / copy_rate:10.2f}  (target ≥ 0.5)")
        print(f"ratio upsert / COPY:      {upsert_rate / copy_rate:10.2f}")
        print(
            f"ratio validation / COPY:  {validation_rate / copy_rate:10.2f}  (one CPU, for scale)"
        )
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
