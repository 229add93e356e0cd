"""The error catalog: every problem code the API can answer with, and the exceptions that carry them.

The catalog is the single source for the exception handler, the OpenAPI schema and docs/errors.md.
"""

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    title: str
    meaning: str

    @property
    def type_uri(self) -> str:
        return f"https://docs.neuronx.io/errors#{self.code}"


_CODES = [
    ErrorCode(
        "malformed_request",
        400,
        "Malformed request",
        "The body is not valid JSON, not a JSON object, or a query parameter cannot be parsed.",
    ),
    ErrorCode(
        "idempotency_key_required",
        400,
        "Idempotency key required",
        "A POST or PATCH was sent without a valid `Idempotency-Key` header (1–255 printable "
        "ASCII characters).",
    ),
    ErrorCode(
        "authentication_failed",
        401,
        "Authentication failed",
        "The `Authorization: Bearer` API key is missing, unknown or revoked.",
    ),
    ErrorCode(
        "permission_denied",
        403,
        "Permission denied",
        "The API key lacks the scope the operation requires; `required_scope` names it.",
    ),
    ErrorCode(
        "tenant_mismatch",
        403,
        "Tenant mismatch",
        "`X-Tenant-ID` was sent and names a tenant other than the API key's.",
    ),
    ErrorCode(
        "consent_required",
        403,
        "Consent required",
        "The lead has not granted (or has revoked, or let expire) the consent scopes the "
        "action needs; `missing_scopes` lists them.",
    ),
    ErrorCode(
        "not_found",
        404,
        "Not found",
        "No such route, or no such object for this tenant (objects of other tenants are "
        "indistinguishable from missing ones).",
    ),
    ErrorCode(
        "method_not_allowed",
        405,
        "Method not allowed",
        "The route exists but does not support this HTTP method; `Allow` lists those it does.",
    ),
    ErrorCode(
        "idempotency_key_in_use",
        409,
        "Idempotency key in use",
        "A request with this `Idempotency-Key` is still being processed; retry later.",
    ),
    ErrorCode(
        "lead_exists",
        409,
        "Lead exists",
        "A lead with the same `email` or `external_id` already exists for the tenant; "
        "`existing_id` names it.",
    ),
    ErrorCode(
        "invalid_state_transition",
        409,
        "Invalid state transition",
        "The lead's current stage does not allow this action.",
    ),
    ErrorCode(
        "lead_closed",
        409,
        "Lead closed",
        "The lead is `verified_paid` and has been handed off; it is read-only.",
    ),
    ErrorCode(
        "routing_not_configured",
        409,
        "Routing not configured",
        "The tenant has no routing rules to route the lead with.",
    ),
    ErrorCode(
        "no_rep_available",
        409,
        "No rep available",
        "Routing matched a team, but none of its reps is active with free capacity.",
    ),
    ErrorCode(
        "appointment_closed",
        409,
        "Appointment closed",
        "The appointment is canceled, completed or no-show and can no longer change.",
    ),
    ErrorCode(
        "payment_not_cancelable",
        409,
        "Payment not cancelable",
        "Only an `initiated` payment can be canceled.",
    ),
    ErrorCode(
        "webhook_limit_reached",
        409,
        "Webhook subscription limit reached",
        "The tenant already has the maximum number of webhook subscriptions; delete one first.",
    ),
    ErrorCode(
        "webhook_subscription_inactive",
        409,
        "Webhook subscription inactive",
        "The subscription is disabled; re-enable it (`PATCH` with `is_active: true`) before "
        "redelivering.",
    ),
    ErrorCode(
        "webhook_delivery_pending",
        409,
        "Webhook delivery pending",
        "The delivery is still pending (an attempt is due or running); wait for its outcome.",
    ),
    ErrorCode(
        "payload_too_large",
        413,
        "Payload too large",
        "The request body exceeds the documented size limit for the operation.",
    ),
    ErrorCode(
        "unsupported_media_type",
        415,
        "Unsupported media type",
        "The `Content-Type` is not one the operation accepts (usually `application/json`).",
    ),
    ErrorCode(
        "validation_error",
        422,
        "Validation error",
        "One or more fields are invalid; `errors` lists each with `field`, `code` and `message`.",
    ),
    ErrorCode(
        "idempotency_key_reused",
        422,
        "Idempotency key reused",
        "The `Idempotency-Key` was already used with a different request (method, path or body).",
    ),
    ErrorCode(
        "rate_limited",
        429,
        "Rate limited",
        "The API key exceeded its rate-limit class; wait `Retry-After` seconds.",
    ),
    ErrorCode(
        "too_many_imports",
        429,
        "Too many imports",
        "The tenant already has the maximum number of lead imports queued or processing; "
        "retry when one has finished (`Retry-After` suggests when).",
    ),
    ErrorCode(
        "internal_error",
        500,
        "Internal error",
        "An unexpected fault. Nothing was stored for the idempotency key, so the request can "
        "be retried. Quote `request_id` to support.",
    ),
    ErrorCode(
        "service_unavailable",
        503,
        "Service unavailable",
        "A backing service (database, cache) is unreachable; retry with backoff.",
    ),
]

CATALOG: dict[str, ErrorCode] = {error.code: error for error in _CODES}


class ApiError(Exception):
    """A failure the API reports as an RFC 9457 problem with a stable `code`."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or CATALOG[self.code].meaning
        self.extra = extra
        self.headers: dict[str, str] = {}
        super().__init__(self.detail)

    @property
    def status(self) -> int:
        return CATALOG[self.code].status


class MalformedRequest(ApiError):
    code = "malformed_request"


class IdempotencyKeyRequired(ApiError):
    code = "idempotency_key_required"


class AuthenticationFailed(ApiError):
    code = "authentication_failed"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer realm="api"'


class PermissionDenied(ApiError):
    code = "permission_denied"


class TenantMismatch(ApiError):
    code = "tenant_mismatch"


class ConsentRequired(ApiError):
    code = "consent_required"


class NotFound(ApiError):
    code = "not_found"


class IdempotencyKeyInUse(ApiError):
    code = "idempotency_key_in_use"


class LeadExists(ApiError):
    code = "lead_exists"


class InvalidStateTransition(ApiError):
    code = "invalid_state_transition"


class RoutingNotConfigured(ApiError):
    code = "routing_not_configured"


class NoRepAvailable(ApiError):
    code = "no_rep_available"


class AppointmentClosed(ApiError):
    code = "appointment_closed"


class PaymentNotCancelable(ApiError):
    code = "payment_not_cancelable"


class LeadClosed(ApiError):
    code = "lead_closed"


class WebhookLimitReached(ApiError):
    code = "webhook_limit_reached"


class WebhookSubscriptionInactive(ApiError):
    code = "webhook_subscription_inactive"


class WebhookDeliveryPending(ApiError):
    code = "webhook_delivery_pending"


class PayloadTooLarge(ApiError):
    code = "payload_too_large"


class IdempotencyKeyReused(ApiError):
    code = "idempotency_key_reused"


class RateLimited(ApiError):
    code = "rate_limited"


class TooManyImports(ApiError):
    code = "too_many_imports"


class ServiceUnavailable(ApiError):
    code = "service_unavailable"


class ValidationFailed(ApiError):
    """Field errors raised by services (outside serializers), reported as `validation_error`."""

    code = "validation_error"

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        super().__init__(detail or "The request has invalid fields.", errors=errors)
