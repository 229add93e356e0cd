"""Writing one chunk of validated import rows: match them against stored leads, then write them
with set-based statements.

The plan is plain Python and the same everywhere: one query finds the stored leads sharing an
`external_id` or `email` with the chunk; `create` mode turns those rows into `lead_exists`
errors, `upsert` mode updates the lead matched by `external_id`, else by `email`.

On PostgreSQL new leads are COPYed (binary COPY: nothing to format as text, nothing for the
server to parse) straight into the leads table (the plan has already removed every row that
could conflict) and updates are COPYed into a temporary staging table and applied by one
`UPDATE … FROM`. A lead written concurrently by someone else between the plan and the
write makes the COPY fail on a unique index: the caller rolls the chunk's transaction back and
writes the chunk again, planned against the new state. Other databases (SQLite in development) use
`bulk_create` / `bulk_update` under the same plan. No path saves leads one by one.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

from django.db import IntegrityError, connection
from django.db.models import Q
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types
from psycopg.pq import Format

from consent.services import consent_append_many
from gtm_api.lead_fields import LEAD_FIELDS, LEAD_TEXT_FIELDS, FieldError
from gtm_api.models import Lead, LeadImportRowError, Stage
from neuronx.context import Actor
from neuronx.ids import new_id

_TEXT_FIELDS = tuple(spec.name for spec in LEAD_TEXT_FIELDS)
# The lead columns an import writes, in the order of `ValidRow.columns`.
_LEAD_COLUMNS = (*_TEXT_FIELDS, "attributes")
_EXTERNAL_ID = _LEAD_COLUMNS.index("external_id")
_EMAIL = _LEAD_COLUMNS.index("email")
_NO_ATTRIBUTES = "{}"


class ValidRow(tuple[int, tuple[Any, ...], list[dict[str, Any]]]):
    """A row that passed validation, `(number, columns, consents)`: its lead columns as COPY
    sends them — the clean text fields (None where not given), then the attributes as JSON text
    (`{}` when none; see `lead_columns`) — and its clean consent records.

    The columns are built where the row is validated — in a child process for a large file —
    so that this per-row work stays off the process writing to the database. A tuple, so that
    the writer makes one from the child's message without a Python call per row.
    """

    __slots__ = ()

    @property
    def number(self) -> int:
        return self[0]

    @property
    def columns(self) -> tuple[Any, ...]:
        return self[1]

    @property
    def consents(self) -> list[dict[str, Any]]:
        return self[2]

    @property
    def external_id(self) -> str | None:
        return self[1][_EXTERNAL_ID]  # type: ignore[no-any-return]

    @property
    def email(self) -> str | None:
        return self[1][_EMAIL]  # type: ignore[no-any-return]

    def keys(self) -> tuple[str | None, str | None]:
        """`(external_id, email)`, the keys a lead is matched by."""
        columns = self[1]
        return columns[_EXTERNAL_ID], columns[_EMAIL]

    def given(self) -> dict[str, Any]:
        """The lead fields the row sets (a field not given, or empty attributes, is absent)."""
        *texts, attributes = self.columns
        given = {n: v for n, v in zip(_TEXT_FIELDS, texts, strict=True) if v is not None}
        if attributes != _NO_ATTRIBUTES:
            given["attributes"] = json.loads(attributes)
        return given


def lead_columns(lead: dict[str, Any]) -> tuple[Any, ...]:
    """The `ValidRow.columns` of a clean lead (as `lead_row_validate` returns it)."""
    attributes = lead.get("attributes")
    return (
        *map(lead.get, _TEXT_FIELDS),
        attributes_json(attributes) if attributes else _NO_ATTRIBUTES,
    )


def attributes_json(attributes: dict[str, Any]) -> str:
    """`json.dumps(attributes)`, spelled out for the common case of text values (a CSV's are),
    where it costs half as much."""
    for value in attributes.values():
        if type(value) is not str:
            return json.dumps(attributes)
    return (
        "{"
        + ", ".join([f"{_quoted(key)}: {_quoted(value)}" for key, value in attributes.items()])
        + "}"
    )


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

    Raises IntegrityError if a lead with one of the chunk's keys is stored already, and the
    chunk was not matched (`state` then says to match from now on), or was written concurrently;
    the caller rolls back and calls again.
    """
    if not state.match:
        result = ChunkResult(created=len(rows))
        try:
            _apply(actor, _Plan(creates=list(rows)), result, now)
        except IntegrityError:
            # The whole transaction is rolled back, not a savepoint: the rows of a
            # subtransaction cost more to write, and to check at commit.
            state.match = True
            raise
        return result
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
    external_ids = [r.external_id for r in rows if r.external_id]
    emails = [r.email for r in rows if r.email]
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
        external_id = row.external_id
        email = row.email
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
# The types a binary COPY sends (the server converts text to varchar as it stores it).
_LEAD_TYPES = (*("text" for _ in _TEXT_FIELDS), "jsonb")
_CREATE_TYPES = ("text", "text", *_LEAD_TYPES, "text", "timestamptz", "timestamptz")
_STAGE_TYPES = ("text", "int4", *_LEAD_TYPES)


def _apply(actor: Actor, plan: _Plan, result: ChunkResult, now: datetime) -> None:
    created_ids = [new_id("lead") for _ in plan.creates]
    if connection.vendor == "postgresql":
        _apply_copy(actor, plan, created_ids, result, now)
    else:
        _apply_orm(actor, plan, created_ids, result, now)
    consents = [
        (lead_id, record)
        for lead_id, row in zip(created_ids, plan.creates, strict=True)
        for record in row.consents
    ]
    consents += [(lead_id, record) for lead_id, row, _ in plan.updates for record in row.consents]
    if consents:
        consent_append_many(actor=actor, records=consents)


def _apply_copy(
    actor: Actor, plan: _Plan, created_ids: list[str], result: ChunkResult, now: datetime
) -> None:
    tenant_id = actor.tenant.pk
    if plan.creates:
        stage = Stage.NEW.value
        _copy(
            Lead._meta.db_table,
            _CREATE_COLUMNS,
            (
                (lead_id, tenant_id, *row.columns, stage, now, now)
                for lead_id, row in zip(created_ids, plan.creates, strict=True)
            ),
            types=_CREATE_TYPES,
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
                *row.columns[:-1],
                None if row.columns[-1] == _NO_ATTRIBUTES else row.columns[-1],
            )
            for lead_id, row, round_ in plan.updates
        ),
        types=_STAGE_TYPES,
    )
    # The staging table is not analysed: without statistics it looks small, and the update
    # looks each lead up by its primary key, which is the right plan for a chunk.
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
        # The plan saw these leads open; one closed (or deleted) since is not updated, and says
        # so. Only those are found: each staged lead is looked up by its primary key.
        cursor.execute(
            "SELECT DISTINCT s.id FROM lead_import_stage AS s WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT FROM {table} AS l WHERE l.id = s.id AND l.stage <> %s)",
            [Stage.VERIFIED_PAID],
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
                **dict(zip(_TEXT_FIELDS, row.columns[:-1], strict=True)),
                attributes=json.loads(row.columns[-1]),
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
            given = row.given()
            if any(getattr(lead, name) != value for name, value in given.items()):
                for name, value in given.items():
                    setattr(lead, name, value)
                lead.updated_at = now
                changed.append(lead)
        Lead.objects.bulk_update(changed, [*LEAD_FIELDS, "updated_at"], batch_size=500)
    _unapplied(plan, {lead_id for lead_id, _, _ in plan.updates} - set(leads), result)


def _unapplied(plan: _Plan, closed_ids: set[str], result: ChunkResult) -> None:
    """Rows whose lead was closed (or deleted) between the plan and the update become errors."""
    if not closed_ids:
        return
    for lead_id, row, _ in plan.updates:
        if lead_id in closed_ids:
            result.updated -= 1
            result.errors.append(
                (
                    row.number,
                    FieldError("", "lead_closed", f"The matching lead {lead_id} is read-only now."),
                )
            )
    result.errors.sort(key=lambda item: item[0])


class _JsonTextDumper(Dumper):
    """jsonb in a binary COPY from JSON text encoded already (`ValidRow.columns`), rather than
    from a Python object encoded here."""

    format = Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()  # the jsonb binary format: version 1, then the text


class _JsonText(str):
    """Only here to register `_JsonTextDumper`: a binary COPY picks its dumpers by type oid."""


def _copy(
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    types: Sequence[str] | None = None,
) -> None:
    """COPY the rows into the table; in binary when the columns' `types` are given."""
    quoted = ", ".join(connection.ops.quote_name(name) for name in columns)
    statement = f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN"
    # psycopg's COPY bypasses Django's cursor wrapper: map its errors (a unique violation
    # above all) to Django's, as every other query does.
    with connection.wrap_database_errors, connection.cursor() as cursor:
        if types is not None:
            statement += " (FORMAT BINARY)"
            cursor.adapters.register_dumper(_JsonText, _JsonTextDumper)  # type: ignore[attr-defined]
        with cursor.copy(statement) as copy:  # type: ignore[attr-defined]
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
