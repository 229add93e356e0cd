"""The event catalog in the OpenAPI document, and as self-contained JSON Schemas for
`GET /v1/event-types` — both from `webhooks.events`, so they cannot disagree."""

import copy
from functools import cache
from typing import Any

from webhooks.events import CATALOG, EventType, Schema, ref, string

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def component_name(event_type: str) -> str:
    """`lead_import.completed` → `LeadImportCompletedEvent`."""
    words = event_type.replace(".", "_").split("_")
    return "".join(word.capitalize() for word in words) + "Event"


def envelope_schema(event_type: EventType) -> Schema:
    return {
        "type": "object",
        "description": f"`{event_type.name}`: {event_type.description}",
        "required": ["id", "type", "created_at", "tenant_id", "data"],
        "properties": {
            "id": string("Event id (`evt_…`), also sent as `webhook-id`: deduplicate on it."),
            "type": {"type": "string", "enum": [event_type.name]},
            "created_at": string("When the change happened (RFC 3339, UTC).", fmt="date-time"),
            "tenant_id": string("The tenant the event belongs to."),
            "data": event_type.data,
        },
    }


def postprocess_event_types(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Publish every event type: a component per envelope, `WebhookEvent` (one of them, by
    `type`), and `x-webhooks` (the OpenAPI 3.1 `webhooks` object, as an extension in 3.0)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    mapping = {}
    webhooks = {}
    for name, event_type in CATALOG.items():
        component = component_name(name)
        schemas[component] = envelope_schema(event_type)
        mapping[name] = f"#/components/schemas/{component}"
        webhooks[name] = {
            "post": {
                "summary": event_type.description,
                "description": "Signed per Standard Webhooks: verify `webhook-signature` over "
                "`webhook-id.webhook-timestamp.body` with the subscription's secret.",
                "parameters": [
                    {"name": header, "in": "header", "required": True, "schema": string()}
                    for header in ("webhook-id", "webhook-timestamp", "webhook-signature")
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(component)}},
                },
                "responses": {
                    "2XX": {
                        "description": "Received. Any other status (or none within the "
                        "timeout) is retried on the schedule."
                    }
                },
            }
        }
    schemas["WebhookEvent"] = {
        "description": "The body of every webhook: the envelope of one event type.",
        "oneOf": [ref(component_name(name)) for name in CATALOG],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    result["x-webhooks"] = webhooks
    return result


# -- JSON Schema for GET /v1/event-types ------------------------------------------------------


def _to_json_schema(node: Any, components: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema 2020-12: refs inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [_to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = components[node["$ref"].rsplit("/", 1)[1]]
        return _to_json_schema(
            {**target, **{k: v for k, v in node.items() if k != "$ref"}}, components
        )
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            converted[key] = {name: _to_json_schema(v, components) for name, v in value.items()}
        elif key == "example":
            converted["examples"] = [value]
        elif key == "nullable":
            continue
        else:
            converted[key] = _to_json_schema(value, components)
    if node.get("nullable"):
        if isinstance(converted.get("type"), str) and "enum" not in converted:
            converted["type"] = [converted["type"], "null"]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def _components() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema["components"]["schemas"]


def event_type_catalog() -> list[dict[str, Any]]:
    """Every event type with its description and the JSON Schema of its `data` member."""
    components = _components()
    return [
        {
            "type": name,
            "description": event_type.description,
            "subscribable": event_type.subscribable,
            "schema": {
                "$schema": JSON_SCHEMA_DIALECT,
                **_to_json_schema(copy.deepcopy(event_type.data), components),
            },
        }
        for name, event_type in CATALOG.items()
    ]
