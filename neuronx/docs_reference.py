"""docs/reference.md: every `/v1/` operation, rendered from the OpenAPI document and its declaration.

Parameters, request bodies, responses and request examples come from the document drf-spectacular
generates (the one `GET /v1/schema` serves); scope, rate class, consent, usage and idempotency come
from the operation's `@operation(...)` declaration. Each `curl` example is built from a request
example of the schema or, when an operation has none, from the smallest body its schema accepts;
`tests/test_reference_docs.py` validates every example body against the schema and sends it to a
real tenant.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from django.core.management.base import CommandError

from neuronx.idempotency import HEADER as IDEMPOTENCY_HEADER
from neuronx.markdown import GENERATED, table
from neuronx.operations import Operation
from neuronx.schema_reader import SchemaReader, alternatives, anchor, clean, ref_name

BASE_URL = "http://127.0.0.1:8000"
JSON = "application/json"
MULTIPART = "multipart/form-data"
PROBLEM = "application/problem+json"
# Headers every response carries; the responses table names only the others.
COMMON_RESPONSE_HEADERS = {"X-Request-ID", "RateLimit-Policy", "RateLimit"}

# The seven categories of the contract, in its order.
CATEGORIES = {
    "ingestion": (
        "1. Ingestion",
        "Create and update single leads, keep their consent ledger, and import leads in bulk.",
    ),
    "qualification": ("2. Qualification", "Score a lead and move it to `qualified` or not."),
    "routing": ("3. Routing", "Give a qualified lead an owner with the tenant's routing rules."),
    "appointments": ("4. Appointments", "Book, reschedule and close appointments."),
    "payments": (
        "5. Payments",
        "Initiate and cancel payments. Verification is internal: no operation marks a payment "
        "paid.",
    ),
    "status": ("6. Status", "Read leads and their whole lifecycle."),
    "webhooks": ("7. Webhooks", "Subscribe to events, follow deliveries, rotate secrets."),
}
TAG_CATEGORY = {
    "Leads": "ingestion",
    "Consent": "ingestion",
    "Lead imports": "ingestion",
    "Qualification": "qualification",
    "Routing": "routing",
    "Appointments": "appointments",
    "Payments": "payments",
    "Status": "status",
    "Webhooks": "webhooks",
}
# Lead reads are tagged with the lead writes but belong to category 6 of the contract.
CATEGORY_OVERRIDES = {"leads_list": "status", "leads_retrieve": "status"}


@dataclass(frozen=True)
class DocumentedOperation:
    method: str
    path: str
    operation_id: str
    schema: dict[str, Any]
    declaration: Operation
    category: str


def path_variable(path: str, name: str) -> str:
    """`{id}` of `/v1/leads/{id}` → `LEAD_ID`; `{delivery_id}` → `DELIVERY_ID`."""
    if name != "id":
        return name.upper()
    segments = path.split("/")
    resource = segments[segments.index("{id}") - 1]
    singular = resource[:-1] if resource.endswith("s") else resource
    return singular.upper().replace("-", "_") + "_ID"


def documented_operations(
    document: dict[str, Any], declarations: dict[tuple[str, str], Operation]
) -> list[DocumentedOperation]:
    """The operations of the document with their declaration and category, in contract order."""
    found = []
    for path, methods in document["paths"].items():
        for method, schema in methods.items():
            key = (method.upper(), path)
            if key not in declarations:
                raise CommandError(f"{method.upper()} {path} is in the schema but not declared.")
            operation_id = schema["operationId"]
            tags = schema.get("tags", [])
            category = CATEGORY_OVERRIDES.get(operation_id) or next(
                (TAG_CATEGORY[tag] for tag in tags if tag in TAG_CATEGORY), None
            )
            if category is None:
                raise CommandError(
                    f"{method.upper()} {path} has no category: tag it with one of "
                    f"{sorted(TAG_CATEGORY)} or add it to CATEGORY_OVERRIDES."
                )
            found.append(
                DocumentedOperation(key[0], path, operation_id, schema, declarations[key], category)
            )
    missing = set(declarations) - {(o.method, o.path) for o in found}
    if missing:
        raise CommandError(f"Declared operations missing from the schema: {sorted(missing)}.")
    categories, tags = list(CATEGORIES), list(TAG_CATEGORY)
    methods = ("POST", "GET", "PATCH", "DELETE")

    def position(o: DocumentedOperation) -> tuple[int, int, str, int]:
        tag = next((tags.index(t) for t in o.schema.get("tags", []) if t in tags), len(tags))
        return categories.index(o.category), tag, o.path, methods.index(o.method)

    return sorted(found, key=position)


# -- curl examples --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurlExample:
    title: str
    command: str


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _url(path: str) -> str:
    concrete = re.sub(r"\{(\w+)\}", lambda m: "$" + path_variable(path, m[1]), path)
    url = BASE_URL + concrete
    return f'"{url}"' if "$" in url else url


def _request_examples(
    reader: SchemaReader, op: DocumentedOperation
) -> Iterator[tuple[str, tuple[str, Any]]]:
    """(media type, title, body) of every request example, or a minimal body per media type."""
    content = op.schema.get("requestBody", {}).get("content", {})
    for media, media_schema in content.items():
        examples = media_schema.get("examples", {})
        if examples:
            for name, example in examples.items():
                yield media, (example.get("summary") or name, example["value"])
        else:
            body = reader.minimal(media_schema["schema"])
            yield media, ("An empty body" if body == {} else "The required fields only", body)


def curl_examples(reader: SchemaReader, op: DocumentedOperation) -> list[CurlExample]:
    def command(number: int, body: Any, media: str | None) -> str:
        parts = [f"curl -s -X {op.method} {_url(op.path)}"]
        if op.method == "GET":
            parts = [f"curl -s {_url(op.path)}"]
        parts.append('-H "Authorization: Bearer $NEURONX_KEY"')
        if media == JSON:
            parts.append(f"-H 'Content-Type: {JSON}'")
        if op.declaration.idempotent:
            key = op.operation_id.replace("_", "-") + f"-{number}"
            parts.append(f"-H '{IDEMPOTENCY_HEADER}: {key}'")
        if media == JSON:
            parts.append("-d " + _shell_quote(json.dumps(body, indent=2, ensure_ascii=False)))
        elif media == MULTIPART:
            for name, value in body.items():
                parts.append("-F " + _shell_quote(f"{name}={value}"))
        return " \\\n  ".join(parts)

    found = []
    for number, (media, (title, body)) in enumerate(_request_examples(reader, op), start=1):
        if media == MULTIPART:
            schema = op.schema["requestBody"]["content"][media]["schema"]
            properties = reader.resolve(schema)["properties"]
            # A binary field is a file to upload: curl's `-F name=@file`.
            body = {
                name: "@leads.csv"
                if reader.type_text(properties[name], link=False) == "file"
                else value
                for name, value in body.items()
            }
            title = "Upload a file" if title == "The required fields only" else title
        elif media != JSON:
            raise CommandError(f"{op.method} {op.path}: no curl example for {media} bodies.")
        found.append(CurlExample(title, command(number, body, media)))
    if not found:
        found.append(CurlExample("", command(1, None, None)))
    return found


# -- rendering ------------------------------------------------------------------------------------


def _parameters(reader: SchemaReader, op: DocumentedOperation) -> list[str]:
    parameters = op.schema.get("parameters", [])
    if not parameters:
        return []
    rows = [
        [
            f"`{p['name']}`",
            p["in"],
            reader.type_text(p.get("schema", {}), link=False),
            "yes" if p.get("required") else "no",
            reader.constraints(p.get("schema", {})),
            clean(p.get("description")),
        ]
        for p in parameters
    ]
    return [
        "**Parameters**",
        "",
        *table(["name", "in", "type", "required", "constraints", "description"], rows),
        "",
    ]


def _field_table(reader: SchemaReader, node: dict[str, Any]) -> list[str]:
    rows = [
        [f"`{f.name}`", f.type, "yes" if f.required else "no", f.constraints, f.description]
        for f in reader.fields(node)
    ]
    rules = reader.rules(node)
    lines = table(["field", "type", "required", "constraints", "description"], rows)
    return [*lines, "", " ".join(rules)] if rules else lines


def _request_body(reader: SchemaReader, op: DocumentedOperation) -> list[str]:
    body = op.schema.get("requestBody")
    if body is None:
        if op.method in ("POST", "PATCH"):
            return ["**Request body**: none (send no body, or `{}`).", ""]
        return []
    lines = ["**Request body**", ""]
    for media, content in body["content"].items():
        node = content["schema"]
        resolved = reader.resolve(node)
        component = ref_name(node)
        named = f" — `{component}`" if component else ""
        required = " (required)" if body.get("required") else ""
        lines += [f"`{media}`{named}{required}. {clean(resolved.get('description'))}".rstrip()]
        lines.append("")
        if alternatives(resolved):
            for alternative in alternatives(resolved):
                inner = reader.resolve(alternative)
                lines += [
                    f"One of — `{ref_name(alternative)}`: {clean(inner.get('description'))}".rstrip()
                ]
                lines += ["", *_field_table(reader, alternative), ""]
        elif resolved.get("properties"):
            lines += [*_field_table(reader, node), ""]
        else:
            lines += ["No fields: an empty JSON object `{}`.", ""]
    return lines


def _responses(reader: SchemaReader, op: DocumentedOperation) -> list[str]:
    rows = []
    for status, response in sorted(op.schema["responses"].items()):
        content = response.get("content", {})
        headers = ", ".join(
            f"`{name}`"
            for name in response.get("headers", {})
            if name not in COMMON_RESPONSE_HEADERS
        )
        if PROBLEM in content:
            codes = content[PROBLEM].get("examples", {})
            meaning = ", ".join(f"[`{code}`](errors.md#{code})" for code in codes)
            body = "[`Problem`](errors.md)"
        else:
            description = clean(response.get("description"))
            meaning = HTTPStatus(int(status)).phrase
            if description and description != "No response body":
                meaning += f": {description}"
            bodies = []
            for media, media_schema in content.items():
                schema = media_schema.get("schema", {})
                shown = reader.type_text(schema, link=True)
                bodies.append(shown if media == JSON else f"`{media}` ({shown})")
            body = ", ".join(bodies) or "none"
        rows.append([status, meaning, body, headers or "—"])
    return ["**Responses**", "", *table(["status", "meaning", "body", "headers"], rows), ""]


def _contract(op: DocumentedOperation) -> list[str]:
    declared = op.declaration
    consent = ", ".join(f"`{scope}`" for scope in declared.consent) or "none"
    if declared.consent_note:
        consent += f" ({declared.consent_note})"
    idempotent = (
        f"yes: send `{IDEMPOTENCY_HEADER}`; a retry with the same key and body replays the "
        "first outcome"
        if declared.idempotent
        else "no"
    )
    lines = [
        f"- **API key scope**: `{declared.scope}`",
        f"- **Rate class**: `{declared.rate_class}`",
        f"- **Consent**: {consent}",
        "- **Usage**: "
        + (f"`{declared.usage}`, one event per success" if declared.usage else "none"),
        f"- **Idempotent**: {idempotent}",
    ]
    if declared.deprecation is not None:
        deprecation = declared.deprecation
        lines.append(
            f"- **Deprecated** since {deprecation.since:%Y-%m-%d}, sunset "
            f"{deprecation.sunset:%Y-%m-%d}; use `{deprecation.successor}` "
            "(see [versioning.md](versioning.md))"
        )
    return [*lines, ""]


def _operation(reader: SchemaReader, op: DocumentedOperation) -> list[str]:
    summary = op.schema.get("summary", "")
    lines = [
        f'<a id="{op.operation_id}"></a>',
        f"### `{op.method} {op.path}` — {summary}",
        "",
    ]
    if op.schema.get("description"):
        lines += [clean(op.schema["description"]), ""]
    lines += _contract(op)
    lines += _parameters(reader, op)
    lines += _request_body(reader, op)
    lines += _responses(reader, op)
    for example in curl_examples(reader, op):
        title = f"**Example: {example.title}**" if example.title else "**Example**"
        lines += [title, "", "```sh", example.command, "```", ""]
    return lines


def _response_components(reader: SchemaReader, operations: list[DocumentedOperation]) -> list[str]:
    """Every object component a success response returns, directly or nested."""
    seen: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            component = node.get("$ref", "").rsplit("/", 1)[-1] if "$ref" in node else None
            if component and component not in seen and reader.is_object(component):
                seen.append(component)
                visit(reader.components[component])
            for value in node.values():
                visit(value)

    for op in operations:
        for status, response in op.schema["responses"].items():
            if status.startswith("2"):
                visit(response.get("content", {}))
    return sorted(seen)


def _component(reader: SchemaReader, name: str) -> list[str]:
    resolved = reader.resolve(reader.components[name])
    rows = [
        [
            f"`{field}`",
            reader.type_text(prop, link=True),
            reader.constraints(prop),
            clean(reader.resolve(prop).get("description")),
        ]
        for field, prop in resolved["properties"].items()
    ]
    lines = [f'<a id="{anchor(name)}"></a>', f"### `{name}`", ""]
    if resolved.get("description"):
        lines += [clean(resolved["description"]), ""]
    return [*lines, *table(["field", "type", "constraints", "description"], rows), ""]


def render_reference(
    document: dict[str, Any], declarations: dict[tuple[str, str], Operation]
) -> str:
    reader = SchemaReader(document)
    operations = documented_operations(document, declarations)
    lines = [
        GENERATED.format(source="the OpenAPI document and the @operation declarations"),
        "",
        "# API reference",
        "",
        "Every `/v1/` operation: what it does, its contract (API key scope, rate class, consent, "
        "usage, idempotency), its parameters, its request body field by field, every response "
        "status with its body or error codes, and a `curl` example. The same facts, "
        "machine-readable, are in the OpenAPI document (`GET /v1/schema`).",
        "",
        "Conventions:",
        "",
        "- Base URL: your NeuronX host; the examples use a local server, "
        f"`{BASE_URL}`. Every operation needs `Authorization: Bearer <api key>`; the examples "
        "read the key from `$NEURONX_KEY`.",
        "- Path ids in the examples are shell variables (`$LEAD_ID`, `$APPOINTMENT_ID`, …): set "
        "them to ids the API returned. Ids inside example bodies (`lead_01JF3Q…`) stand for "
        "yours too, and appointment times must lie in the next 366 days.",
        "- Bodies are JSON (`Content-Type: application/json`) unless said otherwise; unknown "
        "and read-only fields are refused with `422`. Every `POST` and `PATCH` needs an "
        f"`{IDEMPOTENCY_HEADER}`; see [idempotency-and-rate-limits.md](idempotency-and-rate-limits.md).",
        "- Every response carries `X-Request-ID`, `RateLimit-Policy` and `RateLimit`; the "
        "**headers** column lists the others. Every error is an RFC 9457 problem; its codes "
        "link to the [error catalog](errors.md).",
        "- The per-operation map of scopes, consent and usage is in "
        "[operations.md](operations.md); the lifecycle behind the stage rules in "
        "[lifecycle.md](lifecycle.md); which test proves which promise in "
        "[traceability.md](traceability.md).",
        "",
        "## Contents",
        "",
    ]
    for category, (title, _) in CATEGORIES.items():
        members = [o for o in operations if o.category == category]
        entries = ", ".join(f"[`{o.method} {o.path}`](#{o.operation_id})" for o in members)
        lines.append(f"- **{title}**: {entries}")
    lines += ["- [Response bodies](#response-bodies)", ""]
    for category, (title, blurb) in CATEGORIES.items():
        lines += [f"## {title}", "", blurb, ""]
        for op in operations:
            if op.category == category:
                lines += _operation(reader, op)
    lines += [
        "## Response bodies",
        "",
        "The objects the operations above answer with (`Problem` is in [errors.md](errors.md)).",
        "",
    ]
    for name in _response_components(reader, operations):
        lines += _component(reader, name)
    return "\n".join(lines).rstrip("\n") + "\n"
