"""The data of `bench/api_bench.py`: tenants, a million leads COPYed with their history, cleanup.

Imported once Django is set up.
"""

import base64
import io
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from neuronx.models import Tenant

CREATED_SOURCE = "api_bench"  # the `source` of the leads the bench POSTs, deleted at the end
STAGES = (  # (stage, share of leads)
    ("new", 0.35),
    ("qualified", 0.20),
    ("disqualified", 0.15),
    ("routed", 0.15),
    ("appointment_scheduled", 0.10),
    ("payment_pending", 0.05),
)
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
NULL = "\\N"  # in COPY text
TITLES = ["CTO", "VP Engineering", "Head of Sales", "Founder", "Data Engineer", NULL]
SOURCES = ["web_form", "hubspot", "crm_export", "event", "partner"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", NULL]
UTM = ["google", "linkedin", "newsletter", "event"]
SPAN = timedelta(days=730)


# -- data ---------------------------------------------------------------------------------------


_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _ulid(ms: int, random_bits: int) -> str:
    """The body of a `neuronx.ids` id minted at `ms`: ids sort by creation time, as the API's."""
    raw = ((ms << 80) | random_bits).to_bytes(20, "big")  # 160 bits: the last 26 digits hold it
    return base64.b32encode(raw).decode()[-26:].translate(_CROCKFORD)


def _lead_lines(tenant_id: str, count: int, now: datetime, seed: int) -> Iterator[str]:
    """COPY text lines of `count` leads created over SPAN, oldest first (as a table fills)."""
    rng = random.Random(seed)
    rand, choice, below = rng.random, rng.choice, rng.randrange
    end_ms = int(now.timestamp() * 1000)
    span_ms = int(SPAN.total_seconds() * 1000)
    stamps = sorted(end_ms - below(span_ms) for _ in range(count))
    stages = [stage for stage, share in STAGES for _ in range(round(share * 20))]
    owned = {"routed", "appointment_scheduled", "payment_pending"}
    people = [(f"{first}\t{last}", f"{first}.{last}".lower()) for first in FIRST for last in LAST]
    companies = [
        (f"company{n}.{tld}", f"Company{n}") for n in range(5000) for tld in ("io", "com", "de")
    ]
    tail = [
        f"{title}\t{country}\t{source}"
        for title in TITLES
        for country in COUNTRIES
        for source in SOURCES
    ]
    for i, ms in enumerate(stamps):
        stage = choice(stages)
        names, local = choice(people)
        domain, company = choice(companies)
        yield (
            f"lead_{_ulid(ms, rng.getrandbits(79))}\t{tenant_id}\t"
            f"{f'crm-{i}' if rand() < 0.6 else NULL}\t{local}.{i}@{domain}\t"
            f"{f'+4930{10_000_000 + below(89_999_999)}' if rand() < 0.7 else NULL}\t"
            f"{names}\t{company}\t{choice(tail)}\t"
            f'{{"utm_source":"{choice(UTM)}","employees":{below(5000)}}}\t'
            f"{stage}\t{NULL if stage == 'new' else below(101)}\t"
            f"{choice(('ada', 'grace')) if stage in owned else NULL}\t"
            f"{_timestamp(ms)}\t{_timestamp(min(end_ms, ms + below(604_800_000)))}\n"
        )


_DAYS: dict[int, str] = {}


def _timestamp(ms: int) -> str:
    day, ms = divmod(ms, 86_400_000)
    if day not in _DAYS:
        _DAYS[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
    seconds, milliseconds = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_DAYS[day]} {hours:02d}:{minutes:02d}:{seconds:02d}.{milliseconds:03d}+00"


LEAD_COLUMNS = (
    "id, tenant_id, external_id, email, phone, first_name, last_name, company, job_title, "
    "country, source, attributes, stage, score, owner, created_at, updated_at"
)

# Each stage's history: (n, from, to, cause). A lead in `routed` went new → qualified → routed.
PATHS = {
    "qualified": [(1, "new", "qualified", "qualify")],
    "disqualified": [(1, "new", "disqualified", "qualify")],
    "routed": [(1, "new", "qualified", "qualify"), (2, "qualified", "routed", "route")],
    "appointment_scheduled": [
        (1, "new", "qualified", "qualify"),
        (2, "qualified", "routed", "route"),
        (3, "routed", "appointment_scheduled", "appointment_created"),
    ],
    "payment_pending": [
        (1, "new", "qualified", "qualify"),
        (2, "qualified", "routed", "route"),
        (3, "routed", "appointment_scheduled", "appointment_created"),
        (4, "appointment_scheduled", "payment_pending", "payment_initiated"),
    ],
}
FACTORS = json.dumps(
    [
        {"name": "business_email", "points": 25, "reason": "Email on a company domain."},
        {"name": "company", "points": 15, "reason": "Company given."},
        {"name": "job_title", "points": 20, "reason": "Senior title."},
        {"name": "phone", "points": 10, "reason": "Phone number given."},
        {"name": "country", "points": 10, "reason": "Served country."},
    ]
)


def _history_sql() -> list[str]:
    """INSERT … SELECTs writing every lead's history as its stage implies, in id order."""
    paths = ", ".join(
        f"('{stage}', {n}, '{src}', '{dst}', '{cause}')"
        for stage, steps in PATHS.items()
        for n, src, dst, cause in steps
    )
    qualified_plus = (
        "('qualified', 'disqualified', 'routed', 'appointment_scheduled', 'payment_pending')"
    )
    routed_plus = "('routed', 'appointment_scheduled', 'payment_pending')"
    with_appointment = "('appointment_scheduled', 'payment_pending')"
    return [
        "INSERT INTO gtm_api_stagetransition "
        "(id, from_stage, to_stage, cause, actor, request_id, at, lead_id, tenant_id) "
        "SELECT 'trn_' || substr(l.id, 6) || p.n, p.src, p.dst, p.cause, 'api_key:bench', "
        "'req_bench', l.created_at + p.n * interval '1 hour', l.id, l.tenant_id "
        f"FROM gtm_api_lead l JOIN (VALUES {paths}) AS p(stage, n, src, dst, cause) "
        "ON p.stage = l.stage ORDER BY l.id, p.n",
        "INSERT INTO gtm_api_qualification "
        "(id, score, qualified, grade, factors, model_version, created_at, lead_id, tenant_id) "
        "SELECT 'qual_' || substr(l.id, 6), l.score, l.stage <> 'disqualified', "
        "CASE WHEN l.score >= 80 THEN 'A' WHEN l.score >= 60 THEN 'B' "
        f"WHEN l.score >= 40 THEN 'C' ELSE 'D' END, '{FACTORS}'::jsonb, 'default:1', "
        "l.created_at + interval '1 hour', l.id, l.tenant_id "
        f"FROM gtm_api_lead l WHERE l.stage IN {qualified_plus} ORDER BY l.id",
        "INSERT INTO gtm_api_assignment "
        "(id, owner, team, rule, strategy, reason, created_at, lead_id, tenant_id, rep_id) "
        "SELECT 'asg_' || substr(l.id, 6), l.owner, 'inbound', 'catch-all', 'round_robin', "
        "'Matched rule catch-all; next rep in the round-robin.', "
        "l.created_at + interval '2 hours', l.id, l.tenant_id, r.id "
        "FROM gtm_api_lead l JOIN gtm_api_rep r ON r.tenant_id = l.tenant_id AND r.key = l.owner "
        f"WHERE l.stage IN {routed_plus} ORDER BY l.id",
        "INSERT INTO gtm_api_appointment "
        "(id, starts_at, ends_at, timezone, channel, location, notes, status, created_at, "
        "updated_at, lead_id, tenant_id) "
        "SELECT 'apt_' || substr(l.id, 6), l.created_at + interval '3 days', "
        "l.created_at + interval '3 days 30 minutes', 'Europe/Berlin', 'video', "
        "'https://meet.example.com/intro', 'Intro call', 'scheduled', "
        "l.created_at + interval '3 hours', l.created_at + interval '3 hours', l.id, "
        f"l.tenant_id FROM gtm_api_lead l WHERE l.stage IN {with_appointment} ORDER BY l.id",
        "INSERT INTO gtm_api_payment "
        "(id, amount, currency, description, status, provider, checkout_reference, "
        "checkout_url, provider_reference, previous_stage, failure_reason, expires_at, "
        "created_at, updated_at, appointment_id, lead_id, tenant_id) "
        "SELECT 'pay_' || substr(l.id, 6), 49900, 'EUR', 'Onboarding package', 'initiated', "
        "'builtin', 'chk_' || substr(l.id, 6), "
        "'https://pay.neuronx.io/checkout/chk_' || substr(l.id, 6), '', "
        "'appointment_scheduled', '', l.created_at + interval '5 days', "
        "l.created_at + interval '4 hours', l.created_at + interval '4 hours', "
        "'apt_' || substr(l.id, 6), l.id, l.tenant_id "
        "FROM gtm_api_lead l WHERE l.stage = 'payment_pending' ORDER BY l.id",
        "INSERT INTO consent_consentrecord "
        "(id, scope, granted, captured_at, source, evidence, expires_at, recorded_at, "
        "recorded_by, request_id, lead_id, tenant_id) "
        "SELECT 'cns_' || substr(l.id, 6) || c.n, c.scope, true, l.created_at, 'web_form', "
        "'Checkbox v3', NULL, l.created_at, 'api_key:bench', 'req_bench', l.id, l.tenant_id "
        "FROM gtm_api_lead l JOIN (VALUES (1, 'contact.email', false), "
        "(2, 'data.profiling', true)) AS c(n, scope, qualified_only) "
        f"ON NOT c.qualified_only OR l.stage IN {qualified_plus} ORDER BY l.id, c.n",
    ]


HISTORY_TABLES = (
    "consent_consentrecord",
    "gtm_api_payment",
    "gtm_api_appointment",
    "gtm_api_assignment",
    "gtm_api_qualification",
    "gtm_api_stagetransition",
)
REQUEST_TABLES = ("usage_usageevent", "webhooks_event", "neuronx_idempotencyrecord")


def tenant_with_key(slug: str) -> tuple[Tenant, str]:
    """The tenant (made by `seed_demo` with its routing) and a new full-scope key for it."""
    out = io.StringIO()
    call_command("seed_demo", tenant=slug, stdout=out)
    tenant = Tenant.objects.get(slug=slug)
    for rate_class in ("read", "write"):
        if tenant.rate_limits.get(rate_class) != UNLIMITED:  # a change un-caches its keys a while
            call_command("set_rate_limit", slug, rate_class, UNLIMITED, stdout=io.StringIO())
    return tenant, out.getvalue().strip().splitlines()[-1]


UNLIMITED = "1000000/m"


def lead_count(tenant: Tenant, *, source: str | None = None) -> int:
    """The tenant's leads; with `source`, only those (the bench's own creates: CREATED_SOURCE)."""
    query = "SELECT count(*) FROM gtm_api_lead WHERE tenant_id = %s"
    params = [tenant.pk]
    if source is not None:
        query, params = query + " AND source = %s", [*params, source]
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return int(cursor.fetchone()[0])


def load(wanted: list[tuple[Tenant, int, int]]) -> None:
    """Replace every lead with `count` generated ones per tenant, and their history.

    One transaction: the lead tables are emptied, their secondary indexes dropped, the leads
    COPYed and the history written, then the indexes built again (far faster than keeping
    them up to date row by row) — an interrupted load leaves the database as it was.
    """
    tables = ["gtm_api_lead", *HISTORY_TABLES]
    now = datetime.now(tz=UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("TRUNCATE gtm_api_lead CASCADE")
        # The generated rows reference what exists by construction: skip the foreign-key
        # triggers (a superuser setting; without it the constraints are checked as usual).
        try:
            with transaction.atomic():
                cursor.execute("SET LOCAL session_replication_role = replica")
        except DatabaseError:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = "
            "(quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)",
            [tables],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for tenant, count, seed in wanted:
            started = time.perf_counter()
            with cursor.copy(f"COPY gtm_api_lead ({LEAD_COLUMNS}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                batch: list[str] = []
                for line in _lead_lines(tenant.pk, count, now, seed):
                    batch.append(line)
                    if len(batch) == 10_000:
                        copy.write("".join(batch))
                        batch.clear()
                copy.write("".join(batch))
            print(
                f"  {tenant.slug}: {count:,} leads COPYed in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        for sql in _history_sql():
            started = time.perf_counter()
            cursor.execute(sql)
            table = sql.split()[2]
            print(
                f"  {table}: {cursor.rowcount:,} rows in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        started = time.perf_counter()
        for _, definition in indexes:
            cursor.execute(definition)
        print(
            f"  {len(indexes)} indexes built in {time.perf_counter() - started:.1f} s", flush=True
        )


def analyze() -> None:
    with connection.cursor() as cursor:
        for table in ("gtm_api_lead", *HISTORY_TABLES):
            cursor.execute(f"ANALYZE {table}")


def prewarm() -> tuple[int, float]:
    """Read the leads, their history and every index of them into memory (`pg_prewarm`), as a
    database server's working set would be; returns the megabytes read and the seconds taken.

    Without it the figures depend on what the machine kept cached since the load: the 1M
    tenant's pages that nothing touched for a while may have been dropped, and the first
    minutes of reads then wait for the disk (the status document, which reads seven tables per
    lead, most of all), which says nothing about the API."""
    started = time.perf_counter()
    tables = ["gtm_api_lead", "gtm_api_caseopened", *HISTORY_TABLES]
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cursor.execute(
            "SELECT coalesce(sum(pg_prewarm(c.oid, 'read')), 0) FROM pg_class c "
            "WHERE c.oid = ANY(%s::regclass[]) OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = ANY(%s::regclass[]))",
            [tables, tables],
        )
        blocks = int(cursor.fetchone()[0])
    return blocks * 8192 // 1_000_000, time.perf_counter() - started


def sample_ids(tenant: Tenant, size: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM gtm_api_lead WHERE tenant_id = %s AND source <> %s "
            "ORDER BY random() LIMIT %s",
            [tenant.pk, CREATED_SOURCE, size],
        )
        return [row[0] for row in cursor.fetchall()]


def cleanup(tenants: list[Tenant]) -> None:
    """Delete what the API calls wrote: the created leads and their consent, usage, events,
    idempotency records (the loaded leads stay, for `--reuse`)."""
    ids = [tenant.pk for tenant in tenants]
    created = "SELECT id FROM gtm_api_lead WHERE tenant_id = ANY(%s) AND source = %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM consent_consentrecord WHERE lead_id IN ({created})", [ids, CREATED_SOURCE]
        )
        cursor.execute(f"DELETE FROM gtm_api_lead WHERE id IN ({created})", [ids, CREATED_SOURCE])
        for table in REQUEST_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", [ids])
        # The deleted leads were the newest, at the head of every page the list reads: left for
        # autovacuum (which waits for a fifth of the table to be dead), each run's would be
        # walked over by the next run's pages. INDEX_CLEANUP ON: with dead rows on fewer than
        # 2 % of its pages, VACUUM leaves the index entries that point at them in place.
        tables = ", ".join(("gtm_api_lead", "consent_consentrecord", *REQUEST_TABLES))
        cursor.execute(f"VACUUM (ANALYZE, INDEX_CLEANUP ON) {tables}")
