"""Reading the OpenAPI 3.0 document drf-spectacular generates: references resolved, and every
schema node described in words (its type, its constraints, the rules between fields) for the
generated API reference."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError

MAX_LISTED_VALUES = 16

# drf-spectacular appends "* `value` - Label" lines for every enum; the tables list the values.
_ENUM_LISTING = re.compile(r"(?:^|\n\n)\* `.*", re.DOTALL)


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    constraints: str
    description: str


def anchor(component: str) -> str:
    return "component-" + component.lower()


def ref_name(node: Any) -> str | None:
    """The component a schema node stands for: `$ref`, or drf-spectacular's `allOf: [$ref]`."""
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[1]
    if len(node.get("allOf", [])) == 1:
        return ref_name(node["allOf"][0])
    return None


def is_requirement(node: Any) -> bool:
    """`{"required": [...]}` inside `anyOf`/`not`: a rule on which fields appear, not a type."""
    return isinstance(node, dict) and "required" in node and not {"type", "$ref"} & set(node)


def alternatives(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The typed alternatives of a `oneOf`/`anyOf` node (field-presence rules left out)."""
    found = node.get("oneOf") or node.get("anyOf") or []
    return [alt for alt in found if not is_requirement(alt)]


def _either(texts: Iterator[str]) -> str:
    return " or ".join(dict.fromkeys(text for part in texts for text in part.split(" or ")))


def clean(description: str | None) -> str:
    return " ".join(_ENUM_LISTING.sub("", description or "").split())


class SchemaReader:
    """Reads the OpenAPI 3.0 document: resolves references, describes types and constraints."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components: dict[str, Any] = document["components"]["schemas"]

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """The node with `$ref`/`allOf: [$ref]` inlined; the node's own keys win."""
        node = dict(node)
        if "$ref" in node:
            target = self.components[str(node.pop("$ref")).rsplit("/", 1)[1]]
            return self.resolve({**target, **node})
        if len(node.get("allOf", [])) == 1:
            inner = node.pop("allOf")[0]
            return {**self.resolve(inner), **node}
        return node

    def is_object(self, component: str) -> bool:
        return "properties" in self.resolve(self.components[component])

    def type_text(self, node: dict[str, Any], *, link: bool) -> str:
        component = ref_name(node)
        resolved = self.resolve(node)
        if link and component and self.is_object(component):
            text = f"[`{component}`](#{anchor(component)})"
        elif alternatives(resolved):
            text = _either(self.type_text(alt, link=link) for alt in alternatives(resolved))
        elif resolved.get("enum") == [None]:
            text = "null"
        elif resolved.get("type") == "array":
            text = "array of " + self.type_text(resolved.get("items", {}), link=link)
        elif resolved.get("format") == "binary":
            text = "file"
        elif "format" in resolved:
            text = f"{resolved.get('type', 'string')} ({resolved['format']})"
        else:
            text = resolved.get("type", "any")
        return _either(iter([text, "null"])) if resolved.get("nullable") else text

    def constraints(self, node: dict[str, Any]) -> str:
        resolved = self.resolve(node)
        if alternatives(resolved):
            found = [self.constraints(alt) for alt in alternatives(resolved)]
            return " or ".join(dict.fromkeys(text for text in found if text))
        parts = []
        values = [value for value in resolved.get("enum", []) if value is not None]
        if values:
            if len(values) <= MAX_LISTED_VALUES:
                parts.append("one of " + ", ".join(f"`{value}`" for value in values))
            else:
                parts.append(f"one of {len(values)} values (`{ref_name(node)}`)")
        lengths = () if values else (("minLength", "maxLength", " characters"),)
        for low, high, unit in (
            *lengths,
            ("minimum", "maximum", ""),
            ("minItems", "maxItems", " items"),
            ("minProperties", "maxProperties", " keys"),
        ):
            bounds = resolved.get(low), resolved.get(high)
            if bounds[1] == 0 and unit == " characters":
                parts.append("empty")
            elif bounds[0] is not None and bounds[1] is not None:
                parts.append(f"{bounds[0]}–{bounds[1]}{unit}")
            elif bounds[1] is not None:
                parts.append(f"≤ {bounds[1]}{unit}")
            elif bounds[0] is not None:
                parts.append(f"≥ {bounds[0]}{unit}")
        if "pattern" in resolved:
            parts.append(f"pattern `{resolved['pattern']}`")
        if "default" in resolved:
            parts.append(f"default `{json.dumps(resolved['default'])}`")
        if resolved.get("type") == "array" and "items" in resolved:
            each = self.constraints(resolved["items"])
            if each and not self.resolve(resolved["items"]).get("properties"):
                parts.append(f"each: {each}")
        return "; ".join(parts)

    def rules(self, node: dict[str, Any]) -> list[str]:
        """The object-level rules of a request body: which fields go together, unknown ones."""
        resolved = self.resolve(node)

        def sets(rules: list[Any]) -> str:
            return "; ".join(
                " and ".join(f"`{name}`" for name in rule["required"])
                for rule in rules
                if is_requirement(rule)
            )

        found = []
        present = [rule for rule in resolved.get("anyOf", []) if is_requirement(rule)]
        if present:
            found.append(f"At least one of: {sets(present)}.")
        excluded = resolved.get("not", {}).get("anyOf", [])
        if excluded and all(is_requirement(rule) for rule in excluded):
            found.append(f"Never together: {sets(excluded)}.")
        if resolved.get("additionalProperties") is False and resolved.get("properties"):
            found.append("Any other field is refused (`422`, `unknown_field`).")
        return found

    def fields(self, node: dict[str, Any], prefix: str = "") -> list[Field]:
        """Every property, nested objects and arrays of objects expanded (`consents[].scope`)."""
        resolved = self.resolve(node)
        required = set(resolved.get("required", []))
        found = []
        for name, prop in resolved.get("properties", {}).items():
            full = prefix + name
            found.append(
                Field(
                    full,
                    self.type_text(prop, link=False),
                    name in required,
                    self.constraints(prop),
                    clean(self.resolve(prop).get("description")),
                )
            )
            inner = self.resolve(prop)
            if inner.get("properties"):
                found += self.fields(inner, prefix=full + ".")
            elif inner.get("type") == "array" and self.resolve(inner["items"]).get("properties"):
                found += self.fields(inner["items"], prefix=full + "[].")
        return found

    def minimal(self, node: dict[str, Any]) -> Any:
        """The smallest value `node` accepts: required properties only, lower bounds."""
        resolved = self.resolve(node)
        values = [value for value in resolved.get("enum", []) if value is not None]
        kind = resolved.get("type")
        if "example" in resolved:
            return resolved["example"]
        if values:
            return values[0]
        if alternatives(resolved):
            return self.minimal(alternatives(resolved)[0])
        if kind == "object" or "properties" in resolved:
            required = list(resolved.get("required", []))
            present = [rule for rule in resolved.get("anyOf", []) if is_requirement(rule)]
            if present:
                required += present[0]["required"]
            return {
                name: self.minimal(prop)
                for name, prop in resolved.get("properties", {}).items()
                if name in required
            }
        if kind == "array":
            return [self.minimal(resolved["items"]) for _ in range(resolved.get("minItems", 0))]
        if kind == "string":
            return {
                "date-time": "2026-12-01T09:00:00Z",
                "email": "ada@analytical-engines.com",
                "uri": "https://example.com/",
            }.get(resolved.get("format", ""), "x" * max(resolved.get("minLength", 1), 1))
        if kind in ("integer", "number"):
            return resolved.get("minimum", 1)
        if kind == "boolean":
            return True
        raise CommandError(f"Cannot build an example value for the schema {resolved!r}.")
