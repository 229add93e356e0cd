"""The per-operation contract: declared once on each API action, read by everything else.

Authentication, scope checks, rate limiting, idempotency, usage docs and the OpenAPI schema all
read the `Operation` attached to a view method, so they cannot disagree. A system check
(`neuronx.checks`) fails when a `/v1/` operation has none.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Literal, TypeVar

RateClass = Literal["read", "write", "bulk", "webhooks"]

# Error codes every authenticated operation can answer with.
BASE_ERRORS = (
    "authentication_failed",
    "permission_denied",
    "tenant_mismatch",
    "rate_limited",
    "internal_error",
    "service_unavailable",
)
IDEMPOTENCY_ERRORS = (
    "idempotency_key_required",
    "idempotency_key_in_use",
    "idempotency_key_reused",
)
BODY_ERRORS = (
    "malformed_request",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
)

NO_CONSENT: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deprecation:
    """A deprecated operation: announced `since`, removed at `sunset`, replaced by `successor`."""

    since: datetime
    sunset: datetime
    successor: str
    policy: str = "https://docs.neuronx.io/versioning"

    def headers(self) -> dict[str, str]:
        return {
            "Deprecation": f"@{int(self.since.timestamp())}",  # RFC 9745 structured date
            "Sunset": format_datetime(self.sunset, usegmt=True),  # RFC 8594 HTTP-date
            "Link": f'<{self.successor}>; rel="successor-version", '
            f'<{self.policy}>; rel="deprecation"',
        }


@dataclass(frozen=True)
class Operation:
    rate_class: RateClass
    scope: str
    consent: tuple[str, ...]
    usage: str | None
    idempotent: bool
    errors: tuple[str, ...] = ()
    has_body: bool = False
    consent_note: str = ""
    deprecation: Deprecation | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_codes(self) -> tuple[str, ...]:
        codes = list(BASE_ERRORS)
        if self.idempotent:
            codes += IDEMPOTENCY_ERRORS
        if self.has_body:
            codes += BODY_ERRORS
        if self.consent:
            codes.append("consent_required")
        codes += self.errors
        return tuple(dict.fromkeys(codes))

    def as_extension(self) -> dict[str, Any]:
        return {
            "rate_class": self.rate_class,
            "scope": self.scope,
            "consent": list(self.consent),
            "consent_note": self.consent_note or None,
            "usage": self.usage,
            "idempotent": self.idempotent,
            "deprecated": self.deprecation is not None,
        }


F = TypeVar("F", bound=Callable[..., Any])


def operation(
    *,
    rate_class: RateClass,
    scope: str,
    consent: tuple[str, ...],
    usage: str | None,
    idempotent: bool,
    errors: tuple[str, ...] = (),
    has_body: bool = False,
    consent_note: str = "",
    deprecation: Deprecation | None = None,
) -> Callable[[F], F]:
    """Declare the contract of one API action. `consent=NO_CONSENT` says 'none' explicitly."""
    declared = Operation(
        rate_class=rate_class,
        scope=scope,
        consent=consent,
        usage=usage,
        idempotent=idempotent,
        errors=errors,
        has_body=has_body,
        consent_note=consent_note,
        deprecation=deprecation,
    )

    def attach(func: F) -> F:
        func.operation = declared  # type: ignore[attr-defined]
        return func

    return attach


def read_operation(*, scope: str = "leads:read", errors: tuple[str, ...] = ()) -> Callable[[F], F]:
    """The common read: `read` class, no consent, not metered, not idempotent (GET)."""
    return operation(
        rate_class="read",
        scope=scope,
        consent=NO_CONSENT,
        usage=None,
        idempotent=False,
        errors=errors,
    )


def operation_of(view: Any, method_name: str | None) -> Operation | None:
    if method_name is None:
        return None
    handler = getattr(view, method_name, None)
    return getattr(handler, "operation", None)
