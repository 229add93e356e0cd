"""Write the generated docs: the error catalog, the per-operation contract map, the complete API
reference and the traceability table.

All are rendered from the sources the runtime reads (`neuronx.errors.CATALOG`, the `@operation`
declarations found by walking the URLconf, the OpenAPI document drf-spectacular generates) or
checked against them (the requirement registry `docs/requirements.yaml`), so a change to the code
that is not followed by `manage.py generate_docs` fails `generate_docs --check` and the tests.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser
from drf_spectacular.generators import SchemaGenerator

from consent.models import CONSENT_SCOPES
from neuronx.context import request_id_var
from neuronx.docs_reference import render_reference
from neuronx.errors import CATALOG
from neuronx.markdown import GENERATED, table
from neuronx.models import SCOPES
from neuronx.operations import BASE_ERRORS, Operation
from neuronx.problems import problem_body
from neuronx.routes import api_operations
from neuronx.schema import postprocess_problem_components
from neuronx.traceability import registry_problems, render_traceability, requirements_load
from usage.models import DIMENSIONS

DOCS_DIR: Path = settings.BASE_DIR / "docs"
EXAMPLE_REQUEST_ID = "req_5f0c3a9e2b7d4e1f8a6c0b3d9e2f1a47"


@dataclass(frozen=True)
class DocumentedOperation:
    method: str
    path: str
    handler: str
    operation: Operation


def declared_operations() -> list[DocumentedOperation]:
    """Every /v1/ operation with its declaration; an undeclared one is an error here."""
    documented = []
    for declared in api_operations():
        if declared.operation is None:
            raise CommandError(f"{declared.method} {declared.path} declares no @operation.")
        documented.append(
            DocumentedOperation(
                declared.method, declared.path, declared.handler, declared.operation
            )
        )
    return documented


def _codes(codes: Iterable[str]) -> str:
    ordered = sorted(codes, key=lambda code: (CATALOG[code].status, code))
    return ", ".join(f"{CATALOG[code].status} `{code}`" for code in ordered) or "—"


def _example_problem() -> dict[str, Any]:
    token = request_id_var.set(EXAMPLE_REQUEST_ID)
    try:
        return problem_body(
            "validation_error",
            "The request has invalid fields.",
            errors=[
                {
                    "field": "email",
                    "code": "invalid_email",
                    "message": "'ada@' is not a valid email address.",
                },
                {
                    "field": "stage",
                    "code": "unknown_field",
                    "message": "Unknown or read-only field.",
                },
            ],
        )
    finally:
        request_id_var.reset(token)


class Sources:
    """What the pages are rendered from, computed once per run."""

    @cached_property
    def operations(self) -> list[DocumentedOperation]:
        return declared_operations()

    @cached_property
    def schema(self) -> dict[str, Any]:
        return SchemaGenerator().get_schema(request=None, public=True)

    @cached_property
    def anchors(self) -> dict[str, str]:
        """`METHOD /path` → operationId, the anchor of the operation in reference.md."""
        return {
            f"{method.upper()} {path}": operation["operationId"]
            for path, methods in self.schema["paths"].items()
            for method, operation in methods.items()
        }


def render_errors(sources: Sources) -> str:
    problem = postprocess_problem_components({})["components"]["schemas"]["Problem"]
    required = problem["required"]
    members = [
        [
            f"`{name}`",
            "always" if name in required else "when relevant",
            problem["properties"][name].get("description", ""),
        ]
        for name in [*required, *sorted(set(problem["properties"]) - set(required))]
    ]
    lines = [
        GENERATED.format(source="neuronx/errors.py"),
        "",
        "# Error catalog",
        "",
        "Every error the API answers with is an [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) "
        "problem document, served as `application/problem+json` with the HTTP status of its "
        "`code`. Branch on `code`, not on `title` or `detail` (which may be reworded); a client "
        "that meets a code it does not know should fall back to the HTTP status.",
        "",
        "Members:",
        "",
        *table(["member", "present", "meaning"], members),
        "",
        "Example (`422 validation_error`):",
        "",
        "```json",
        json.dumps(_example_problem(), indent=2, ensure_ascii=False),
        "```",
        "",
        "The per-operation list of codes is in [operations.md](operations.md) and in the OpenAPI "
        "document (`GET /v1/schema`), which has an example body for each.",
        "",
        "## Codes",
        "",
        *table(
            ["code", "HTTP status", "title", "meaning"],
            (
                [f'<a id="{e.code}"></a>`{e.code}`', str(e.status), e.title, e.meaning]
                for e in sorted(CATALOG.values(), key=lambda e: (e.status, e.code))
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


def render_operations(sources: Sources) -> str:
    operations = sources.operations

    def users(value: str, declared: Callable[[Operation], Iterable[str | None]]) -> str:
        hits = [f"`{o.method} {o.path}`" for o in operations if value in declared(o.operation)]
        return ", ".join(hits) or "— (no /v1/ operation declares it)"

    def consent(op: Operation) -> str:
        scopes = ", ".join(f"`{scope}`" for scope in sorted(op.consent)) or "none"
        return f"{scopes} ({op.consent_note})" if op.consent_note else scopes

    lines = [
        GENERATED.format(source="the @operation declarations of the /v1/ URLconf"),
        "",
        "# Operations: rate class, scope, consent and usage map",
        "",
        "One row per `/v1/` operation, read from the `@operation(...)` declaration on its view "
        "(`neuronx/operations.py`). The same declaration drives authentication scopes, rate "
        "limiting, idempotency and the `x-neuronx-operation` extension of each operation in the "
        "OpenAPI document, so this table cannot disagree with them.",
        "",
        "- **scope**: the API key scope required (`403 permission_denied` without it).",
        "- **consent**: consent scopes the lead must currently have granted "
        "(`403 consent_required` otherwise); *none* is declared explicitly.",
        "- **usage**: the usage dimension one success records (never on an idempotent replay).",
        "- **idempotent**: `Idempotency-Key` is required; see "
        "[idempotency-and-rate-limits.md](idempotency-and-rate-limits.md).",
        "- **error codes**: the codes the operation can answer with besides those every "
        f"operation can answer with: {_codes(BASE_ERRORS)}. Unknown routes answer "
        f"{_codes(['not_found'])} and unsupported methods {_codes(['method_not_allowed'])}. "
        "See [errors.md](errors.md).",
        "",
        *table(
            [
                "method",
                "path",
                "rate class",
                "scope",
                "consent",
                "usage",
                "idempotent",
                "error codes",
            ],
            (
                [
                    o.method,
                    f"`{o.path}`",
                    o.operation.rate_class,
                    f"`{o.operation.scope}`",
                    consent(o.operation),
                    f"`{o.operation.usage}`" if o.operation.usage else "none",
                    "yes" if o.operation.idempotent else "no",
                    _codes(set(o.operation.error_codes) - set(BASE_ERRORS)),
                ]
                for o in operations
            ),
        ),
        "",
        "`GET /v1/schema` (OpenAPI) and `GET /v1/docs` (interactive docs) are not operations: "
        "they need no API key and carry no rate-limit headers.",
        "",
        "## API key scopes",
        "",
        *table(
            ["key scope", "required by"],
            ([f"`{s}`", users(s, lambda op: [op.scope])] for s in SCOPES),
        ),
        "",
        "## Consent scopes",
        "",
        *table(
            ["consent scope", "required by"],
            ([f"`{s}`", users(s, lambda op: op.consent)] for s in sorted(CONSENT_SCOPES)),
        ),
        "",
        "## Usage dimensions",
        "",
        *table(
            ["dimension", "recorded by"],
            ([f"`{d}`", users(d, lambda op: [op.usage])] for d in sorted(DIMENSIONS)),
        ),
    ]
    return "\n".join(lines) + "\n"


def render_reference_page(sources: Sources) -> str:
    declarations = {(o.method, o.path): o.operation for o in sources.operations}
    return render_reference(sources.schema, declarations)


def render_traceability_page(sources: Sources) -> str:
    requirements = requirements_load()
    problems = registry_problems(
        requirements,
        operations=(f"{o.method} {o.path}" for o in sources.operations),
        commands=get_commands(),
    )
    if problems:
        raise CommandError(
            "docs/requirements.yaml disagrees with the code:\n  " + "\n  ".join(problems)
        )
    return render_traceability(requirements, sources.anchors)


RENDERERS: dict[str, Callable[[Sources], str]] = {
    "errors.md": render_errors,
    "operations.md": render_operations,
    "reference.md": render_reference_page,
    "traceability.md": render_traceability_page,
}


class Command(BaseCommand):
    help = (
        "Write docs/errors.md, operations.md, reference.md and traceability.md; with --check, "
        "fail if they are stale."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="Write nothing; exit non-zero if a file differs."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stale = []
        sources = Sources()
        for name, render in sorted(RENDERERS.items()):
            target = DOCS_DIR / name
            content = render(sources)
            current = target.read_text(encoding="utf-8") if target.exists() else None
            if current == content:
                continue
            stale.append(f"docs/{name}")
            if not options["check"]:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8", newline="\n")
                self.stdout.write(f"Wrote docs/{name}.")
        if options["check"] and stale:
            raise CommandError(
                f"Generated docs are out of date: {', '.join(stale)}. "
                "Run `python manage.py generate_docs` and commit the result."
            )
        if not stale:
            self.stdout.write("Generated docs are up to date.")
