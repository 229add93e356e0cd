"""Writing one chunk of validated import rows: match them against stored leads, then write them
with set-based statements.

The plan is plain Python and the same everywhere: one query finds the stored leads sharing an
`external_id` or `email` with the chunk; `create` mode turns those rows into `lead_exists`
errors, `upsert` mode updates the lead matched by `external_id`, else by `email`.

On PostgreSQL new leads are COPYed straight into the leads table (the plan has already removed
every row that could conflict) and updates are COPYed into a temporary staging table and applied
by one `UPDATE … FROM`. A lead written concurrently by someone else between the plan and the
write makes the COPY fail on a unique index: the caller rolls the chunk's transaction back and
writes the chunk again, planned against the new state. Other databases (SQLite in development) use
`bulk_create` / `bulk_update` under the same plan. No path saves leads one by one.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from consent.services import consent_append_many
from gtm_api.lead_fields import LEAD_FIELDS, LEAD_TEXT_FIELDS, FieldError
from gtm_api.models import Lead, LeadImportRowError, Stage
from neuronx.context import Actor
from neuronx.ids import new_id


@dataclass(slots=True)
class ValidRow:
    """A row that passed validation: its clean lead fields and consent records, and its lead
    columns as COPY sends them (text fields, then attributes as JSON).

    Built by `valid_row` where the row is validated — in a child process for a large file — so
    that this per-row work stays off the process writing to the database.
    """

    number: int
    lead: dict[str, Any]
    consents: list[dict[str, Any]]
    columns: tuple[Any, ...]


_TEXT_FIELDS = tuple(spec.name for spec in LEAD_TEXT_FIELDS)
# The lead columns an import writes, in the order of `ValidRow.columns`.
_LEAD_COLUMNS = (*_TEXT_FIELDS, "attributes")


def valid_row(number: int, lead: dict[str, Any], consents: list[dict[str, Any]]) -> ValidRow:
    attributes = lead.get("attributes")
    columns = (
        *[lead.get(name) for name in _TEXT_FIELDS],
        json.dumps(attributes) if attributes else "{}",
    )
    return ValidRow(number, lead, consents, columns)


@dataclass
class ChunkResult:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, FieldError]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Stored:
    id: str
    stage: str


@dataclass
class _Plan:
    creates: list[ValidRow] = field(default_factory=list)
    # (lead id, row, round): a lead matched by several rows is updated once per round, in order.
    updates: list[tuple[str, ValidRow, int]] = field(default_factory=list)
    errors: list[tuple[int, FieldError]] = field(default_factory=list)


@dataclass
class WriteState:
    """Whether chunks are matched against stored leads before they are written.

    `upsert` and dry runs always match. A `create` import starts optimistic — nothing stored
    shares a key with it, the common case of moving a CRM — and COPYs each chunk without
    looking: a unique index refusing a row proves otherwise, and from then on every chunk is
    matched first (the refused chunk is rolled back and redone).
    """

    match: bool


def chunk_write(
    *,
    actor: Actor,
    rows: Sequence[ValidRow],
    upsert: bool,
    dry_run: bool,
    now: datetime,
    state: WriteState,
) -> ChunkResult:
    """Write (or with `dry_run`, only plan) the chunk, inside the caller's transaction.

    Raises IntegrityError if a lead with one of the chunk's keys was written concurrently (the
    caller rolls back and calls again).
    """
    if not state.match:
        result = ChunkResult(created=len(rows))
        try:
            with transaction.atomic():
                _apply(actor, _Plan(creates=list(rows)), result, now)
            return result
        except IntegrityError:
            state.match = True
    plan = _plan(rows, _stored(actor.tenant.pk, rows), upsert=upsert)
    result = ChunkResult(created=len(plan.creates), updated=len(plan.updates), errors=plan.errors)
    if not dry_run:
        _apply(actor, plan, result, now)
    return result


def errors_write(*, job_id: str, errors: Iterable[tuple[int, FieldError]]) -> None:
    rows = [(job_id, number, e.field, e.code, e.message) for number, e in errors]
    if not rows:
        return
    if connection.vendor == "postgresql":
        _copy(
            LeadImportRowError._meta.db_table, ("job_id", "row", "field", "code", "message"), rows
        )
        return
    LeadImportRowError.objects.bulk_create(
        [
            LeadImportRowError(job_id=job, row=number, field=name, code=code, message=message)
            for job, number, name, code, message in rows
        ],
        batch_size=500,
    )


# -- plan ---------------------------------------------------------------------------------------


def _stored(
    tenant_id: str, rows: Sequence[ValidRow]
) -> tuple[dict[str, _Stored], dict[str, _Stored]]:
    """Stored leads sharing an external_id or email with the chunk, in one query."""
    external_ids = [r.lead["external_id"] for r in rows if r.lead.get("external_id")]
    emails = [r.lead["email"] for r in rows if r.lead.get("email")]
    by_external_id: dict[str, _Stored] = {}
    by_email: dict[str, _Stored] = {}
    if not external_ids and not emails:
        return by_external_id, by_email
    matches: Iterable[tuple[str, str | None, str | None, str]]
    if connection.vendor == "postgresql":
        # Arrays keep it one parameter each; both unique indexes are used (a BitmapOr).
        table = connection.ops.quote_name(Lead._meta.db_table)
        columns = "id, external_id, email, stage"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM {table} "  # noqa: S608  (names are ours)
                "WHERE tenant_id = %s "
                "AND (external_id = ANY(%s::varchar[]) OR email = ANY(%s::varchar[]))",
                [tenant_id, external_ids, emails],
            )
            matches = cursor.fetchall()
    else:
        matches = (
            Lead.objects.filter(tenant_id=tenant_id)
            .filter(Q(external_id__in=external_ids) | Q(email__in=emails))
            .values_list("id", "external_id", "email", "stage")
        )
    for lead_id, external_id, email, stage in matches:
        stored = _Stored(lead_id, stage)
        if external_id is not None:
            by_external_id[external_id] = stored
        if email is not None:
            by_email[email] = stored
    return by_external_id, by_email


def _plan(
    rows: Sequence[ValidRow],
    stored: tuple[dict[str, _Stored], dict[str, _Stored]],
    *,
    upsert: bool,
) -> _Plan:
    by_external_id, by_email = stored
    plan = _Plan()
    rounds: dict[str, int] = {}
    for row in rows:
        external_id = row.lead.get("external_id")
        email = row.lead.get("email")
        by_id = by_external_id.get(external_id) if external_id else None
        by_mail = by_email.get(email) if email else None
        if not upsert:
            if by_id is not None:
                plan.errors.append((row.number, _exists("external_id", by_id)))
            elif by_mail is not None:
                plan.errors.append((row.number, _exists("email", by_mail)))
            else:
                plan.creates.append(row)
            continue
        target = by_id or by_mail
        if target is None:
            plan.creates.append(row)
        elif target.stage == Stage.VERIFIED_PAID:
            plan.errors.append(
                (
                    row.number,
                    FieldError(
                        "",
                        "lead_closed",
                        f"The matching lead {target.id} is verified_paid and handed off; "
                        "it is read-only.",
                    ),
                )
            )
        elif by_mail is not None and by_mail.id != target.id:
            plan.errors.append((row.number, _exists("email", by_mail, other=True)))
        else:
            round_ = rounds.get(target.id, 0)
            rounds[target.id] = round_ + 1
            plan.updates.append((target.id, row, round_))
    return plan


def _exists(name: str, lead: _Stored, *, other: bool = False) -> FieldError:
    whose = "another lead" if other else "a lead that already exists"
    return FieldError(name, "lead_exists", f"The {name} belongs to {whose}: {lead.id}.")


# -- apply --------------------------------------------------------------------------------------

_CREATE_COLUMNS = ("id", "tenant_id", *_LEAD_COLUMNS, "stage", "created_at", "updated_at")
_STAGE_COLUMNS = ("id", "round", *_LEAD_COLUMNS)


def _apply(actor: Actor, plan: _Plan, result: ChunkResult, now: datetime) -> None:
    created_ids = [new_id("lead") for _ in plan.creates]
    if connection.vendor == "postgresql":
        _apply_copy(actor, plan, created_ids, result, now)
    else:
        _apply_orm(actor, plan, created_ids, result, now)
    consents = [
        (lead_id, record)
        for lead_id, row in [
            *zip(created_ids, plan.creates, strict=True),
            *((lead_id, row) for lead_id, row, _ in plan.updates),
        ]
        for record in row.consents
    ]
    if consents:
        consent_append_many(actor=actor, records=consents)


def _apply_copy(
    actor: Actor, plan: _Plan, created_ids: list[str], result: ChunkResult, now: datetime
) -> None:
    tenant_id = actor.tenant.pk
    if plan.creates:
        _copy(
            Lead._meta.db_table,
            _CREATE_COLUMNS,
            (
                (lead_id, tenant_id, *row.columns, Stage.NEW.value, now, now)
                for lead_id, row in zip(created_ids, plan.creates, strict=True)
            ),
        )
    if not plan.updates:
        return
    table = connection.ops.quote_name(Lead._meta.db_table)
    with connection.cursor() as cursor:
        # The lead columns' types without their NOT NULLs: an absent field stages as NULL.
        cursor.execute(
            "CREATE TEMP TABLE lead_import_stage ON COMMIT DROP AS "  # noqa: S608  (names are ours)
            f"SELECT id, 0 AS round, {', '.join(_LEAD_COLUMNS)} FROM {table} WITH NO DATA"
        )
    _copy(
        "lead_import_stage",
        _STAGE_COLUMNS,
        (
            (
                lead_id,
                round_,
                *(row.lead.get(name) for name in _TEXT_FIELDS),
                json.dumps(row.lead["attributes"]) if row.lead.get("attributes") else None,
            )
            for lead_id, row, round_ in plan.updates
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE lead_import_stage")  # a temporary table has no statistics
    # A field the row does not give keeps its stored value: upsert never clears a field. A lead
    # the row would not change is left alone (its updated_at too), though it counts as updated.
    merged = [f"COALESCE(s.{name}, l.{name})" for name in LEAD_FIELDS]
    assignments = ", ".join(
        f"{name} = {value}" for name, value in zip(LEAD_FIELDS, merged, strict=True)
    )
    changes = f"({', '.join(merged)}) IS DISTINCT FROM ({', '.join(f'l.{n}' for n in LEAD_FIELDS)})"
    with connection.cursor() as cursor:
        for round_ in range(max(r for _, _, r in plan.updates) + 1):
            cursor.execute(
                f"UPDATE {table} AS l SET {assignments}, updated_at = %s "  # noqa: S608  (names are ours)
                "FROM lead_import_stage AS s "
                "WHERE s.round = %s AND l.id = s.id AND l.tenant_id = %s AND l.stage <> %s "
                f"AND {changes}",
                [now, round_, tenant_id, Stage.VERIFIED_PAID],
            )
        # The plan saw these leads open; one closed since is not updated, and says so.
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s::varchar[]) AND stage <> %s",  # noqa: S608
            [list({lead_id for lead_id, _, _ in plan.updates}), Stage.VERIFIED_PAID],
        )
        _unapplied(plan, {lead_id for (lead_id,) in cursor.fetchall()}, result)
        # Dropped now, not only at commit: the caller's transaction may span more chunks.
        cursor.execute("DROP TABLE lead_import_stage")


def _apply_orm(
    actor: Actor, plan: _Plan, created_ids: list[str], result: ChunkResult, now: datetime
) -> None:
    Lead.objects.bulk_create(
        [
            Lead(
                id=lead_id,
                tenant_id=actor.tenant.pk,
                **{name: row.lead.get(name) for name in _TEXT_FIELDS},
                attributes=row.lead.get("attributes") or {},
                created_at=now,
                updated_at=now,
            )
            for lead_id, row in zip(created_ids, plan.creates, strict=True)
        ],
        batch_size=500,
    )
    if not plan.updates:
        return
    leads = {
        lead.id: lead
        for lead in Lead.objects.filter(
            tenant_id=actor.tenant.pk, id__in={lead_id for lead_id, _, _ in plan.updates}
        ).exclude(stage=Stage.VERIFIED_PAID)
    }
    for round_ in range(max(r for _, _, r in plan.updates) + 1):
        changed = []
        for lead_id, row, r in plan.updates:
            lead = leads.get(lead_id)
            if r != round_ or lead is None:
                continue
            # As on PostgreSQL: a field not given, or empty attributes, keeps the stored value.
            given = {n: v for n in LEAD_FIELDS if (v := row.lead.get(n)) is not None and v != {}}
            if any(getattr(lead, name) != value for name, value in given.items()):
                for name, value in given.items():
                    setattr(lead, name, value)
                lead.updated_at = now
                changed.append(lead)
        Lead.objects.bulk_update(changed, [*LEAD_FIELDS, "updated_at"], batch_size=500)
    _unapplied(plan, set(leads), result)


def _unapplied(plan: _Plan, open_ids: set[str], result: ChunkResult) -> None:
    """Rows whose lead was closed (or deleted) between the plan and the update become errors."""
    for lead_id, row, _ in plan.updates:
        if lead_id not in open_ids:
            result.updated -= 1
            result.errors.append(
                (
                    row.number,
                    FieldError("", "lead_closed", f"The matching lead {lead_id} is read-only now."),
                )
            )
    result.errors.sort(key=lambda item: item[0])


def _copy(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    quoted = ", ".join(connection.ops.quote_name(name) for name in columns)
    # psycopg's COPY bypasses Django's cursor wrapper: map its errors (a unique violation
    # above all) to Django's, as every other query does.
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.copy(  # type: ignore[attr-defined]
            f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)
