"""Schemathesis hooks for the CI fuzz run (`.ci/run`): the state a schema cannot express.

The OpenAPI document says what a well-formed request looks like; it cannot say which values the
server has already seen, which ids exist, what "now" is or which host names resolve. So that a
schema-valid request is not refused for those reasons alone, each one is adjusted just before it
is sent:

- a fresh `Idempotency-Key` (a reused one is `422 idempotency_key_reused`);
- a fresh `email` and `external_id` for a lead (`409 lead_exists`), a real phone number (the
  numbering plan is not a pattern), attribute keys of 1–64 characters (OpenAPI 3.0 has no
  `propertyNames`);
- consent timestamps in the past, appointment windows in the near future (relative to now);
- a location that fits the appointment's channel (a cross-field rule), a time zone the server's
  zone database has;
- a webhook or import URL whose host needs no DNS (a public address literal: the fuzz server's
  tasks go to a queue no worker reads, so nothing is ever called);
- a real CSV file for an upload (the schema says "binary"; the API reads UTF-8 CSV or NDJSON);
- no `cursor` the server never issued;
- for a webhook delivery address, the delivery `tests/fuzz/prepare.py` made (`FUZZ_DELIVERY`),
  as a delivery id cannot be guessed;
- the `lead_id` of an appointment or payment: a routed lead with every consent, made by
  `tests/fuzz/prepare.py` (`FUZZ_APPOINTMENT_LEADS`, `FUZZ_PAYMENT_LEADS`), unless it came from
  a lead the run routed itself.

Only parts the generator made valid are touched: a value it made invalid on purpose (negative
data, a missing header) is sent as generated. Every adjusted value is still schema-valid.
"""

import os
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC")
PHONES = ("+442079460958", "+4930901820", "+14155550123", "+33142685300", "+61291234567")
# A public address literal: registration needs no DNS. Nothing is delivered to it (see above).
PUBLIC_URL = "https://93.184.215.14/fuzz/"
LEAD_ID_OPERATIONS = {
    ("POST", "/v1/appointments"): "FUZZ_APPOINTMENT_LEADS",
    ("POST", "/v1/payments"): "FUZZ_PAYMENT_LEADS",
}
# Leads this run routed itself (from `POST /v1/leads/{id}/route`): usable as they are.
ROUTED: set[str] = set()


def _fresh() -> str:
    return uuid.uuid4().hex


def _pick(options: tuple[str, ...] | list[str], seed: Any) -> str:
    """A deterministic choice, so that a replayed case sends the same value."""
    return options[zlib.crc32(repr(seed).encode()) % len(options)]


def _positive(case: Any, location: ParameterLocation) -> bool:
    meta = case.meta
    if meta is None:
        return False
    info = meta.components.get(location)
    # An explicit example has no per-part record: it is meant to be valid as a whole.
    mode = info.mode if info is not None else meta.generation.mode
    return mode.is_positive


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _lead(body: dict[str, Any]) -> None:
    email = body.get("email")
    if isinstance(email, str):
        domain = email.rpartition("@")[2]
        body["email"] = f"{_fresh()}@{domain}" if len(domain) <= 200 else f"{_fresh()}@example.com"
    if isinstance(body.get("external_id"), str):
        body["external_id"] = f"fuzz-{_fresh()}"
    if isinstance(body.get("phone"), str):
        body["phone"] = _pick(PHONES, body["phone"])
    attributes = body.get("attributes")
    if isinstance(attributes, dict):
        body["attributes"] = {
            (key if 1 <= len(key) <= 64 and "\x00" not in key else f"k{index}"): value
            for index, (key, value) in enumerate(attributes.items())
        }
    if isinstance(body.get("consents"), list):
        for record in body["consents"]:
            _consent(record)


def _keep_a_contact(body: dict[str, Any]) -> None:
    """Clearing one of email and phone needs the other: the stored one may be empty."""
    if "email" in body and body["email"] is None and not isinstance(body.get("phone"), str):
        body["phone"] = PHONES[0]
    if "phone" in body and body["phone"] is None and not isinstance(body.get("email"), str):
        body["email"] = f"{_fresh()}@example.com"


def _consent(record: Any) -> None:
    if not isinstance(record, dict):
        return
    captured = _now() - timedelta(days=1)
    if "captured_at" in record:
        record["captured_at"] = _stamp(captured)
    if isinstance(record.get("expires_at"), str):
        record["expires_at"] = _stamp(captured + timedelta(days=365))


def _window(body: dict[str, Any], seed: Any) -> None:
    if "starts_at" in body or "ends_at" in body:
        starts = _now() + timedelta(days=1 + zlib.crc32(repr(seed).encode()) % 300)
        body["starts_at"] = _stamp(starts)
        body["ends_at"] = _stamp(starts + timedelta(minutes=30))


def _timezone(body: dict[str, Any]) -> None:
    if isinstance(body.get("timezone"), str) and body["timezone"] not in ZONES:
        body["timezone"] = _pick(ZONES, body["timezone"])


def _location(body: dict[str, Any]) -> None:
    if "channel" not in body and "location" not in body:
        return
    channel = body.setdefault("channel", "in_person")
    location = body.get("location")
    if channel == "phone":
        body["location"] = _pick(PHONES, location)
    elif channel == "video":
        body["location"] = f"https://meet.example.com/{_fresh()}"
    elif not isinstance(location, str) or not location.strip():
        body["location"] = "1 Main Street, Springfield"


def _lead_id(case: Any, body: dict[str, Any]) -> None:
    variable = LEAD_ID_OPERATIONS.get((case.method.upper(), case.operation.path))
    seeded = [lead for lead in os.environ.get(variable or "", "").split(",") if lead]
    if seeded and body.get("lead_id") not in ROUTED:
        body["lead_id"] = _pick(seeded, body.get("lead_id"))
        # An appointment id drawn at random, or one of another lead, would be a 404 or 422.
        if "appointment_id" in body:
            body["appointment_id"] = None


def _body(case: Any) -> None:
    body = case.body
    operation = (case.method.upper(), case.operation.path)
    if case.media_type == "multipart/form-data" and isinstance(body, dict) and "file" in body:
        # Text, not bytes: the body stays checkable against the schema.
        body["file"] = (
            f"first_name,last_name,email,source\nAda,Lovelace,{_fresh()}@example.com,fuzz\n"
        )
        body["format"] = "csv"
        return
    if not isinstance(body, dict):
        return
    if operation in {("POST", "/v1/leads"), ("PATCH", "/v1/leads/{id}")}:
        _lead(body)
        if operation[0] == "PATCH":
            _keep_a_contact(body)
    elif operation == ("POST", "/v1/leads/{id}/consents"):
        _consent(body)
        for record in body.get("consents") or []:
            _consent(record)
    elif operation in {("POST", "/v1/appointments"), ("PATCH", "/v1/appointments/{id}")}:
        _window(body, case.body)
        _timezone(body)
        _location(body)
        _lead_id(case, body)
    elif operation == ("POST", "/v1/payments"):
        _lead_id(case, body)
    elif operation[1].startswith("/v1/webhook-subscriptions") and "url" in body:
        body["url"] = PUBLIC_URL + _fresh()
    elif operation == ("POST", "/v1/lead-imports") and "source_url" in body:
        body["source_url"] = PUBLIC_URL + f"{_fresh()}.csv"


def _delivery(case: Any) -> None:
    """A delivery address names the fuzz run's delivery: a generated one never exists. (It
    stays pending, as no worker sends it, so redelivering it is a 409.)"""
    subscription, _, delivery = os.environ.get("FUZZ_DELIVERY", "").partition("/")
    if delivery:
        case.path_parameters.update(id=subscription, delivery_id=delivery)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if "{delivery_id}" in case.operation.path and _positive(case, ParameterLocation.PATH):
        _delivery(case)
    if case.headers and _positive(case, ParameterLocation.HEADER):
        key = case.headers.get("Idempotency-Key")
        if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
            case.headers["Idempotency-Key"] = f"fuzz-{_fresh()}"
    if isinstance(case.query, dict) and _positive(case, ParameterLocation.QUERY):
        case.query.pop("cursor", None)
    if _positive(case, ParameterLocation.BODY):
        _body(case)


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if case.operation.path == "/v1/leads/{id}/route" and response.status_code == 200:
        ROUTED.add(response.json()["lead_id"])
