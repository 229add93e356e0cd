import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from consent.models import ConsentRecord
from consent.selectors import ScopeState, consent_history, consent_state
from gtm_api.models import (
    Appointment,
    Assignment,
    Lead,
    Payment,
    Qualification,
    Stage,
    StageTransition,
)
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
    fields: tuple[str, ...]  # the document's names of the columns, in the SQL's order
    times: frozenset[str] = frozenset()  # timestamps
    flags: frozenset[str] = frozenset()  # booleans (SQLite's driver may give 0 and 1)
    json: frozenset[str] = frozenset()  # JSON documents


QUALIFICATION = Rows(
    ("score", "qualified", "grade", "factors", "model_version", "qualified_at"),
    times=frozenset({"qualified_at"}),
    flags=frozenset({"qualified"}),
    json=frozenset({"factors"}),
)
ASSIGNMENT = Rows(
    ("owner", "team", "rule", "strategy", "reason", "routed_at"),
    times=frozenset({"routed_at"}),
)
APPOINTMENTS = Rows(
    (
        "id",
        "lead_id",
        "starts_at",
        "ends_at",
        "timezone",
        "channel",
        "location",
        "notes",
        "status",
        "created_at",
        "updated_at",
    ),
    times=frozenset({"starts_at", "ends_at", "created_at", "updated_at"}),
)
PAYMENTS = Rows(
    (
        "id",
        "lead_id",
        "appointment_id",
        "amount",
        "currency",
        "description",
        "status",
        "provider",
        "checkout_reference",
        "checkout_url",
        "expires_at",
        "failure_reason",
        "created_at",
        "updated_at",
        "verified_at",
    ),
    times=frozenset({"expires_at", "created_at", "updated_at", "verified_at"}),
)
# The fields `consent_state` reads, in the model's order: the ledger is handed to it as records.
CONSENTS = Rows(
    ("scope", "granted", "captured_at", "expires_at"),
    times=frozenset({"captured_at", "expires_at"}),
    flags=frozenset({"granted"}),
)
HISTORY = Rows(
    ("from_stage", "to_stage", "cause", "actor", "request_id", "at"),
    times=frozenset({"at"}),
)
_CHILDREN = (QUALIFICATION, ASSIGNMENT, APPOINTMENTS, PAYMENTS, CONSENTS, HISTORY)

# The lead and its case; then, for the lead id and the tenant, the rows of each of _CHILDREN.
# Every table is read by tenant as well as by lead.
_LEAD = (
    "SELECT l.id, l.stage, l.score, l.owner, c.id, c.opened_at "
    "FROM gtm_api_lead l LEFT JOIN gtm_api_caseopened c ON c.lead_id = l.id "
    "WHERE l.tenant_id = %s AND l.id = %s"
)
_PER_TABLE = (
    "SELECT score, qualified, grade, factors, model_version, created_at "
    "FROM gtm_api_qualification WHERE lead_id = %s AND tenant_id = %s "
    "ORDER BY created_at DESC, id DESC LIMIT 1",
    "SELECT owner, team, rule, strategy, reason, created_at "
    "FROM gtm_api_assignment WHERE lead_id = %s AND tenant_id = %s "
    "ORDER BY created_at DESC, id DESC LIMIT 1",
    "SELECT id, lead_id, starts_at, ends_at, timezone, channel, location, notes, status, "
    "created_at, updated_at "
    "FROM gtm_api_appointment WHERE lead_id = %s AND tenant_id = %s ORDER BY starts_at, id",
    "SELECT id, lead_id, appointment_id, amount, currency, description, status, provider, "
    "checkout_reference, checkout_url, expires_at, failure_reason, created_at, updated_at, "
    "verified_at "
    "FROM gtm_api_payment WHERE lead_id = %s AND tenant_id = %s ORDER BY id",
    "SELECT scope, granted, captured_at, expires_at "
    "FROM consent_consentrecord WHERE lead_id = %s AND tenant_id = %s "
    "ORDER BY captured_at DESC, id DESC",
    "SELECT from_stage, to_stage, cause, actor, request_id, at "
    "FROM gtm_api_stagetransition WHERE lead_id = %s AND tenant_id = %s ORDER BY at, id",
)
# The same in one statement, as JSON text: one `json.loads` instead of the driver's JSON
# loading; timestamps come back in ISO 8601 in the session's time zone, microseconds included.
_ONE_QUERY = """
SELECT json_build_array(
  l.id, l.stage, l.score, l.owner, c.id, c.opened_at,
  (SELECT json_build_array(q.score, q.qualified, q.grade, q.factors, q.model_version,
                           q.created_at)
     FROM gtm_api_qualification q WHERE q.lead_id = l.id AND q.tenant_id = l.tenant_id
     ORDER BY q.created_at DESC, q.id DESC LIMIT 1),
  (SELECT json_build_array(a.owner, a.team, a.rule, a.strategy, a.reason, a.created_at)
     FROM gtm_api_assignment a WHERE a.lead_id = l.id AND a.tenant_id = l.tenant_id
     ORDER BY a.created_at DESC, a.id DESC LIMIT 1),
  (SELECT json_agg(json_build_array(p.id, p.lead_id, p.starts_at, p.ends_at, p.timezone,
                                    p.channel, p.location, p.notes, p.status, p.created_at,
                                    p.updated_at) ORDER BY p.starts_at, p.id)
     FROM gtm_api_appointment p WHERE p.lead_id = l.id AND p.tenant_id = l.tenant_id),
  (SELECT json_agg(json_build_array(y.id, y.lead_id, y.appointment_id, y.amount, y.currency,
                                    y.description, y.status, y.provider, y.checkout_reference,
                                    y.checkout_url, y.expires_at, y.failure_reason,
                                    y.created_at, y.updated_at, y.verified_at) ORDER BY y.id)
     FROM gtm_api_payment y WHERE y.lead_id = l.id AND y.tenant_id = l.tenant_id),
  (SELECT json_agg(json_build_array(r.scope, r.granted, r.captured_at, r.expires_at)
                   ORDER BY r.captured_at DESC, r.id DESC)
     FROM consent_consentrecord r WHERE r.lead_id = l.id AND r.tenant_id = l.tenant_id),
  (SELECT json_agg(json_build_array(t.from_stage, t.to_stage, t.cause, t.actor, t.request_id,
                                    t.at) ORDER BY t.at, t.id)
     FROM gtm_api_stagetransition t WHERE t.lead_id = l.id AND t.tenant_id = l.tenant_id)
)::text
FROM gtm_api_lead l LEFT JOIN gtm_api_caseopened c ON c.lead_id = l.id
WHERE l.tenant_id = %s AND l.id = %s
"""

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
    with statement_cursor(connection) as cursor:
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
        ConsentRecord.from_db(connection.alias, CONSENTS.fields, tuple(row.values()))
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
        for field in rows.times:
            if row[field] is not None:
                row[field] = to_time(row[field])
        for field in rows.flags:
            row[field] = bool(row[field])
        for field in rows.json:
            row[field] = from_json(row[field])
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
