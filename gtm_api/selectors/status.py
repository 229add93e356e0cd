import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from consent.models import ConsentRecord
from consent.selectors import ScopeState, consent_history, consent_state
from gtm_api.appointment_serializers import AppointmentOutput
from gtm_api.models import (
    Appointment,
    Assignment,
    Lead,
    Payment,
    Qualification,
    Stage,
    StageTransition,
)
from gtm_api.payment_serializers import PaymentOutput
from neuronx import errors
from neuronx.fixed_sql import statement_cursor
from neuronx.models import Tenant


@dataclass(frozen=True)
class LeadStatus:
    lead: Lead
    qualification: Qualification | None
    assignment: Assignment | None
    appointments: list[Appointment]
    payments: list[Payment]
    consent: dict[str, ScopeState]
    history: list[StageTransition]

    @property
    def boundary(self) -> dict[str, Any]:
        case = getattr(self.lead, "case", None)
        return {
            "verified_paid": self.lead.stage == Stage.VERIFIED_PAID,
            "case_opened_at": case.opened_at if case else None,
            "case_id": case.id if case else None,
        }


def lead_status(*, tenant: Tenant, lead_id: str) -> LeadStatus:
    """Everything about a lead's lifecycle as model instances, in a fixed number of queries.

    The API renders the document from `lead_status_rows` instead; this is the same data for
    code that wants the objects (and the reference the document is tested against)."""
    try:
        lead = Lead.objects.select_related("case").get(tenant_id=tenant.pk, pk=lead_id)
    except Lead.DoesNotExist:
        raise errors.NotFound(f"No lead {lead_id!r}.") from None
    # By `lead_id`, not `lead`: the ORM builds a query on a plain value with less work.
    history = consent_history(lead=lead)
    return LeadStatus(
        lead=lead,
        qualification=Qualification.objects.filter(lead_id=lead.pk)
        .order_by("-created_at", "-id")
        .first(),
        assignment=Assignment.objects.filter(lead_id=lead.pk)
        .order_by("-created_at", "-id")
        .first(),
        appointments=list(Appointment.objects.filter(lead_id=lead.pk).order_by("starts_at", "id")),
        payments=list(Payment.objects.filter(lead_id=lead.pk).order_by("id")),
        consent=consent_state(lead=lead, history=history),
        history=list(StageTransition.objects.filter(lead_id=lead.pk).order_by("at", "id")),
    )


# -- the status document's data as plain rows ----------------------------------------------
#
# The status document is the API's most expensive read: through the ORM, each of its seven
# queries costs several times more to build and to turn into model instances than to run.
# `lead_status_rows` reads the same rows with fixed SQL: one statement on PostgreSQL (every
# table in a subquery, aggregated as JSON), one plain statement per table elsewhere (SQLite,
# the embedded default). Both read `lead_status`'s rows in its orders; a row is a dict keyed by
# the document's field names in its order, timestamps as aware datetimes.


@dataclass(frozen=True)
class Rows:
    """One table of the document: which rows (`order`, only the latest?) and which columns."""

    table: str
    fields: tuple[str, ...]  # the document's names of the columns, in the SQL's order
    order: tuple[str, ...]  # ORDER BY terms
    latest: bool = False  # only the first row in that order
    columns: Mapping[str, str] = field(default_factory=dict)  # field -> column, where they differ
    times: frozenset[str] = frozenset()  # timestamps
    flags: frozenset[str] = frozenset()  # booleans (SQLite's driver may give 0 and 1)
    json: frozenset[str] = frozenset()  # JSON documents

    def selected(self, alias: str = "") -> str:
        return ", ".join(f"{alias}{self.columns.get(name, name)}" for name in self.fields)

    def ordered(self, alias: str = "") -> str:
        return ", ".join(f"{alias}{term}" for term in self.order)

    def per_table(self) -> str:
        """The table's statement on its own, for the lead id and the tenant."""
        return (
            f"SELECT {self.selected()} FROM {self.table} "  # noqa: S608  (names of ours)
            f"WHERE lead_id = %s AND tenant_id = %s ORDER BY {self.ordered()}"
            + (" LIMIT 1" if self.latest else "")
        )

    def subquery(self) -> str:
        """The table's rows as JSON, in a subquery of the lead `l`."""
        row = f"json_build_array({self.selected('x.')})"
        where = f"FROM {self.table} x WHERE x.lead_id = l.id AND x.tenant_id = l.tenant_id"
        if self.latest:
            return f"(SELECT {row} {where} ORDER BY {self.ordered('x.')} LIMIT 1)"
        return f"(SELECT json_agg({row} ORDER BY {self.ordered('x.')}) {where})"


QUALIFICATION = Rows(
    "gtm_api_qualification",
    ("score", "qualified", "grade", "factors", "model_version", "qualified_at"),
    order=("created_at DESC", "id DESC"),
    latest=True,
    columns={"qualified_at": "created_at"},
    times=frozenset({"qualified_at"}),
    flags=frozenset({"qualified"}),
    json=frozenset({"factors"}),
)
ASSIGNMENT = Rows(
    "gtm_api_assignment",
    ("owner", "team", "rule", "strategy", "reason", "routed_at"),
    order=("created_at DESC", "id DESC"),
    latest=True,
    columns={"routed_at": "created_at"},
    times=frozenset({"routed_at"}),
)
APPOINTMENTS = Rows(
    "gtm_api_appointment",
    tuple(AppointmentOutput.Meta.fields),
    order=("starts_at", "id"),
    times=frozenset({"starts_at", "ends_at", "created_at", "updated_at"}),
)
PAYMENTS = Rows(
    "gtm_api_payment",
    tuple(PaymentOutput.Meta.fields),
    order=("id",),
    times=frozenset({"expires_at", "created_at", "updated_at", "verified_at"}),
)
# The fields `consent_state` reads, in the model's order: the ledger is handed to it as records.
CONSENTS = Rows(
    "consent_consentrecord",
    ("scope", "granted", "captured_at", "expires_at"),
    order=("captured_at DESC", "id DESC"),
    times=frozenset({"captured_at", "expires_at"}),
    flags=frozenset({"granted"}),
)
HISTORY = Rows(
    "gtm_api_stagetransition",
    ("from_stage", "to_stage", "cause", "actor", "request_id", "at"),
    order=("at", "id"),
    times=frozenset({"at"}),
)
_CHILDREN = (QUALIFICATION, ASSIGNMENT, APPOINTMENTS, PAYMENTS, CONSENTS, HISTORY)

# The lead and its case; then, for the lead id and the tenant, the rows of each of _CHILDREN.
# Every table is read by tenant as well as by lead.
_LEAD_COLUMNS = "l.id, l.stage, l.score, l.owner, c.id, c.opened_at"
_LEAD_FROM = (
    "FROM gtm_api_lead l LEFT JOIN gtm_api_caseopened c ON c.lead_id = l.id "
    "WHERE l.tenant_id = %s AND l.id = %s"
)
_LEAD = f"SELECT {_LEAD_COLUMNS} {_LEAD_FROM}"
_PER_TABLE = tuple(rows.per_table() for rows in _CHILDREN)
# The same in one statement, as JSON text: one `json.loads` instead of the driver's JSON
# loading; timestamps come back in ISO 8601 in the session's time zone, microseconds included.
_ONE_QUERY = (
    f"SELECT json_build_array({_LEAD_COLUMNS}, "
    + ", ".join(rows.subquery() for rows in _CHILDREN)
    + f")::text {_LEAD_FROM}"
)

Row = dict[str, Any]


@dataclass(frozen=True)
class LeadStatusRows:
    lead_id: str
    stage: str
    score: int | None
    owner: str | None
    qualification: Row | None
    assignment: Row | None
    appointments: list[Row]
    payments: list[Row]
    consent: dict[str, str]  # scope -> granted | revoked | expired | not_captured
    case_id: str | None
    case_opened_at: datetime | None
    history: list[Row]


def lead_status_rows(
    *, tenant: Tenant, lead_id: str, one_query: bool | None = None
) -> LeadStatusRows:
    """The tenant's lead's status data as plain values, or `not_found`, in a fixed number of
    queries whatever its history: one on PostgreSQL (`one_query`, the default there), seven
    otherwise. Consent states are those of now: an expiry passed since the last change shows as
    `expired`."""
    if one_query is None:
        one_query = connection.vendor == "postgresql"
    if one_query:
        return _rows_in_one_query(tenant=tenant, lead_id=lead_id)
    return _rows_per_table(tenant=tenant, lead_id=lead_id)


def _rows_per_table(*, tenant: Tenant, lead_id: str) -> LeadStatusRows:
    with connection.cursor() as cursor:
        cursor.execute(_LEAD, [tenant.pk, lead_id])
        lead = cursor.fetchone()
        if lead is None:
            raise errors.NotFound(f"No lead {lead_id!r}.")
        children = []
        for query in _PER_TABLE:
            cursor.execute(query, [lead_id, tenant.pk])
            children.append(cursor.fetchall())
    # Both drivers leave JSON as text, which the ORM decodes the same way.
    return _assemble(lead, children, to_time=_driver_time, from_json=json.loads)


def _rows_in_one_query(*, tenant: Tenant, lead_id: str) -> LeadStatusRows:
    # The connection itself, not the `connection` proxy, which looks it up on each attribute.
    with statement_cursor(connections[DEFAULT_DB_ALIAS]) as cursor:
        cursor.execute(_ONE_QUERY, [tenant.pk, lead_id])
        found = cursor.fetchone()
    if found is None:
        raise errors.NotFound(f"No lead {lead_id!r}.")
    values = json.loads(found[0])
    lead, (qualification, assignment, *many) = values[:6], values[6:]
    children = [[qualification] if qualification is not None else []]
    children.append([assignment] if assignment is not None else [])
    children += [rows if rows is not None else [] for rows in many]
    return _assemble(lead, children, to_time=datetime.fromisoformat, from_json=_as_is)


def _assemble(
    lead: Sequence[Any],
    children: list[Any],
    *,
    to_time: Callable[[Any], datetime],
    from_json: Callable[[Any], Any],
) -> LeadStatusRows:
    qualifications, assignments, appointments, payments, consents, history = (
        _dicts(rows, values, to_time, from_json)
        for rows, values in zip(_CHILDREN, children, strict=True)
    )
    lead_id, stage, score, owner, case_id, case_opened_at = lead
    ledger = [
        ConsentRecord.from_db(DEFAULT_DB_ALIAS, CONSENTS.fields, tuple(row.values()))
        for row in consents
    ]
    states = consent_state(lead=lead_id, history=ledger)
    return LeadStatusRows(
        lead_id=lead_id,
        stage=stage,
        score=score,
        owner=owner,
        qualification=qualifications[0] if qualifications else None,
        assignment=assignments[0] if assignments else None,
        appointments=appointments,
        payments=payments,
        consent={scope: state.state for scope, state in states.items()},
        case_id=case_id,
        case_opened_at=None if case_opened_at is None else to_time(case_opened_at),
        history=history,
    )


def _dicts(
    rows: Rows,
    found: Iterable[Sequence[Any]],
    to_time: Callable[[Any], datetime],
    from_json: Callable[[Any], Any],
) -> list[Row]:
    dicts = []
    for values in found:
        row = dict(zip(rows.fields, values, strict=True))
        for name in rows.times:
            if row[name] is not None:
                row[name] = to_time(row[name])
        for name in rows.flags:
            row[name] = bool(row[name])
        for name in rows.json:
            row[name] = from_json(row[name])
        dicts.append(row)
    return dicts


def _driver_time(value: Any) -> datetime:
    """A timestamp as the ORM reads it: SQLite keeps naive UTC text (its driver may parse it)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, connection.timezone)
    return value  # type: ignore[no-any-return]


def _as_is(value: Any) -> Any:
    return value
