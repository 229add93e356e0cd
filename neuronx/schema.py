"""OpenAPI generation: the per-operation contract, problem responses and the security scheme."""

import copy
from collections import defaultdict
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from neuronx.errors import CATALOG
from neuronx.idempotency import HEADER as IDEMPOTENCY_HEADER
from neuronx.operations import operation_of
from neuronx.serializers import StrictInput

EXTENSION = "x-neuronx-operation"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

_RESPONSE_HEADERS = {
    "X-Request-ID": {
        "description": "Echo of the sent request id, or a generated one.",
        "schema": {"type": "string"},
        "required": True,
    },
    "RateLimit-Policy": {
        "description": 'Quota of the rate-limit class, e.g. `"write";q=300;w=60`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'Remaining quota and seconds to reset, e.g. `"write";r=297;t=42`.',
        "schema": {"type": "string"},
    },
}


# What DRF's CharField accepts: never a NUL character, and (unless blank is allowed) at least
# one character that is not whitespace, because the value is trimmed before it is checked.
TEXT_PATTERN = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
BLANK_TEXT_PATTERN = "^[^\\u0000]*$"


class OperationAutoSchema(AutoSchema):
    def _map_basic_serializer(self, serializer: Any, direction: str) -> Any:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction != "request":
            return schema
        for name, field in serializer.fields.items():
            prop = schema["properties"].get(name)
            if not isinstance(prop, dict):
                continue
            if isinstance(field, serializers.ListField) and not field.allow_empty:
                prop.setdefault("minItems", 1)
            if (
                isinstance(field, serializers.CharField)
                and prop.get("type") == "string"
                and not {"enum", "format", "pattern"} & set(prop)
            ):
                trimmed = field.trim_whitespace and not field.allow_blank
                prop["pattern"] = TEXT_PATTERN if trimmed else BLANK_TEXT_PATTERN
        if isinstance(serializer, StrictInput):
            # Unknown fields are a 422, not silently dropped.
            schema["additionalProperties"] = False
            schema.update(copy.deepcopy(getattr(serializer, "openapi_constraints", {})))
        return schema

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        op = operation_of(self.view, getattr(self.view, "action", None))
        if operation is None or op is None:
            return operation
        operation[EXTENSION] = op.as_extension()
        if op.deprecation is not None:
            operation["deprecated"] = True
            deprecation_headers = {
                name: {
                    "schema": {"type": "string"},
                    "required": True,
                    "description": f"{name} of this deprecated operation (see the versioning policy).",
                }
                for name in op.deprecation.headers()
            }
        else:
            deprecation_headers = {}
        if op.idempotent:
            operation.setdefault("parameters", []).insert(
                0,
                {
                    "name": IDEMPOTENCY_HEADER,
                    "in": "header",
                    "required": True,
                    "description": "Unique key for this request (1–255 printable ASCII). A retry "
                    "with the same key and request replays the first outcome.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[\\x21-\\x7e]+$",
                    },
                },
            )
        operation.setdefault("parameters", []).append(
            {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": "Caller's request id, echoed back when it is 1–128 characters of "
                "`A-Z a-z 0-9 . _ : @ + = / -`; any other value is replaced by a generated id.",
                "schema": {"type": "string"},
            }
        )
        for status_code, response in operation["responses"].items():
            response["headers"] = {
                **_RESPONSE_HEADERS,
                **deprecation_headers,
                **response.get("headers", {}),
            }
            if status_code == "201":
                response["headers"]["Location"] = {
                    "description": "Path of the created resource.",
                    "schema": {"type": "string"},
                    "required": True,
                }
        by_status: dict[int, list[str]] = defaultdict(list)
        for code in op.error_codes:
            by_status[CATALOG[code].status].append(code)
        for status, codes in sorted(by_status.items()):
            headers = dict(_RESPONSE_HEADERS)
            if status == 429:
                headers["Retry-After"] = {
                    "schema": {"type": "integer"},
                    "required": True,
                    "description": "Seconds until the budget resets.",
                }
            operation["responses"][str(status)] = {
                "description": "Problem: " + ", ".join(f"`{c}`" for c in codes),
                "headers": headers,
                "content": {
                    "application/problem+json": {
                        "schema": PROBLEM_REF,
                        "examples": {code: {"value": _example(code)} for code in codes},
                    }
                },
            }
        return operation


def _example(code: str) -> dict[str, Any]:
    error = CATALOG[code]
    example: dict[str, Any] = {
        "type": error.type_uri,
        "title": error.title,
        "status": error.status,
        "detail": error.meaning,
        "code": code,
        "request_id": "req_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    }
    if code == "validation_error":
        example["errors"] = [
            {"field": "email", "code": "invalid", "message": "Enter a valid email address."}
        ]
    if code == "permission_denied":
        example["required_scope"] = "leads:write"
    if code == "consent_required":
        example["missing_scopes"] = ["data.profiling"]
    if code == "lead_exists":
        example["existing_id"] = "lead_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F"
    if code == "invalid_state_transition":
        example["current_stage"] = "new"
        example["allowed_stages"] = ["qualified", "routed"]
    return example


# Links between operations that are not "the created resource's own path": where the id an
# operation answers with is the input of a next step of the lifecycle.
_FLOW_LINKS: tuple[tuple[str, str, str, dict[str, str], dict[str, str] | None], ...] = (
    # (from operationId, status, to operationId, parameters, requestBody)
    ("leads_qualify", "200", "leads_route", {"id": "$response.body#/lead_id"}, None),
    ("leads_route", "200", "appointments_create", {}, {"lead_id": "$response.body#/lead_id"}),
    ("leads_route", "200", "payments_create", {}, {"lead_id": "$response.body#/lead_id"}),
    (
        "appointments_create",
        "201",
        "payments_create",
        {},
        {"lead_id": "$response.body#/lead_id", "appointment_id": "$response.body#/id"},
    ),
    *(
        (
            "webhook_subscriptions_test",
            "202",
            target,
            {"id": "$response.body#/subscription_id", "delivery_id": "$response.body#/id"},
            None,
        )
        for target in (
            "webhook_subscriptions_deliveries_retrieve",
            "webhook_subscriptions_deliveries_redeliver",
        )
    ),
)


def _add_links(paths: dict[str, Any]) -> None:
    """Link each create (201, or 202 for a job, with an `id`) to the operations on the created
    resource's path, and each lifecycle step to the next (`_FLOW_LINKS`)."""
    by_id = {
        operation["operationId"]: (path, method, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    for path, operations in paths.items():
        responses = operations.get("post", {}).get("responses", {})
        created = responses.get("201") or responses.get("202")
        if created is None or "{" in path:
            continue
        links = {}
        for sub_path, sub_operations in paths.items():
            # Only paths whose one parameter is the created resource's id.
            if not sub_path.startswith(f"{path}/{{id}}") or sub_path.count("{") > 1:
                continue
            for method, sub_operation in sub_operations.items():
                links[sub_operation["operationId"]] = {
                    "operationId": sub_operation["operationId"],
                    "parameters": {"id": "$response.body#/id"},
                    "description": f"{method.upper()} {sub_path} on the created resource.",
                }
        if links:
            created["links"] = links
    for source, status, target, parameters, body in _FLOW_LINKS:
        if source not in by_id or target not in by_id:
            continue
        response = by_id[source][2]["responses"].get(status)
        if response is None:
            continue
        target_path, target_method, _ = by_id[target]
        link: dict[str, Any] = {
            "operationId": target,
            "description": f"{target_method.upper()} {target_path} with the ids answered here.",
        }
        if parameters:
            link["parameters"] = parameters
        if body is not None:
            link["requestBody"] = body
        response.setdefault("links", {})[target] = link


def _requires_content(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    if "$ref" in schema:
        return _requires_content(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if schema.get("required") or schema.get("minProperties", 0) > 0:
        return True
    alternatives = schema.get("oneOf") or schema.get("anyOf") or []
    return bool(alternatives) and all(
        _requires_content(alternative, components) for alternative in alternatives
    )


def _mark_required_bodies(paths: dict[str, Any], components: dict[str, Any]) -> None:
    """A body that must name at least one field cannot be left out: say so."""
    for operations in paths.values():
        for operation in operations.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body and all(
                _requires_content(media["schema"], components) for media in body["content"].values()
            ):
                body["required"] = True


def postprocess_problem_components(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    _add_links(result.get("paths", {}))
    _mark_required_bodies(result.get("paths", {}), result.get("components", {}).get("schemas", {}))
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details with a stable `code` from the error catalog.",
        "required": ["type", "title", "status", "detail", "code", "request_id"],
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "URI of the error code's entry in the catalog.",
            },
            "title": {"type": "string", "description": "Short, fixed summary of the code."},
            "status": {"type": "integer", "description": "The HTTP status, repeated."},
            "detail": {
                "type": "string",
                "description": "What went wrong with this request, for a human.",
            },
            "code": {
                "type": "string",
                "enum": sorted(CATALOG),
                "description": "Stable snake_case code from the catalog; branch on this.",
            },
            "request_id": {
                "type": "string",
                "nullable": True,
                "description": "The response's `X-Request-ID`; quote it to support.",
            },
            "errors": {
                "type": "array",
                "description": "`validation_error` only: one `{field, code, message}` per "
                "invalid field.",
                "items": {
                    "type": "object",
                    "required": ["field", "code", "message"],
                    "properties": {
                        "field": {"type": "string"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
            "required_scope": {
                "type": "string",
                "description": "`permission_denied`: the scope the API key lacks.",
            },
            "missing_scopes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "`consent_required`: the consent scopes the lead has not granted.",
            },
            "existing_id": {
                "type": "string",
                "description": "`lead_exists`: the id of the lead that already has "
                "the email or external_id.",
            },
            "retry_after": {
                "type": "integer",
                "description": "`rate_limited`: seconds until the budget resets (as "
                "`Retry-After`).",
            },
            "current_stage": {
                "type": "string",
                "description": "`invalid_state_transition`: the lead's stage now.",
            },
            "allowed_stages": {
                "type": "array",
                "items": {"type": "string"},
                "description": "`invalid_state_transition`: the stages the action needs.",
            },
            "reason": {
                "type": "string",
                "description": "`routing_not_configured`, `no_rep_available`: the rule trace.",
            },
            "appointment_status": {
                "type": "string",
                "description": "`appointment_closed`: the appointment's status.",
            },
            "payment_status": {
                "type": "string",
                "description": "`payment_not_cancelable`, "
                "`invalid_state_transition` (verification): the payment's status.",
            },
        },
        "additionalProperties": True,
    }
    return result


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "neuronx.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "nxk_<prefix>_<secret>",
            "description": "A tenant API key: `Authorization: Bearer nxk_…`. Keys carry scopes.",
        }
