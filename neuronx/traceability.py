"""docs/traceability.md: each public promise → the operations that keep it → the tests that prove it.

The promises live in `docs/requirements.yaml`, one per stable id. Rendering checks the registry
against the code: every operation it names must be routed (or be a management command, or the
schema and docs pages), every test must be a pytest node id whose function is defined in that file,
and every `/v1/` operation must be named by at least one promise. A registry that drifts from the
code fails `generate_docs`, `generate_docs --check` and the tests.
"""

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import CommandError

from neuronx.markdown import GENERATED, table

REGISTRY: Path = settings.BASE_DIR / "docs" / "requirements.yaml"
EVERY_OPERATION = "every operation"
REQUIREMENT_ID = re.compile(r"^[A-Z]+-\d{2}$")
COMMAND = re.compile(r"^manage\.py ([a-z_]+)$")
# Routes under /v1/ that are not API operations but are promised by the contract.
PAGES = {"GET /v1/schema", "GET /v1/docs"}


@dataclass(frozen=True)
class Requirement:
    id: str
    section: str
    promise: str
    operations: tuple[str, ...]
    tests: tuple[str, ...]

    @property
    def every_operation(self) -> bool:
        return self.operations == (EVERY_OPERATION,)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value == EVERY_OPERATION:
        return (EVERY_OPERATION,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CommandError(f"{where}: expected a list of strings, got {value!r}.")
    return tuple(value)


def requirements_load(path: Path | None = None) -> list[Requirement]:
    """The registry's requirements in file order; a malformed registry is a CommandError."""
    path = path or REGISTRY
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = []
    for section in data["sections"]:
        for entry in section["requirements"]:
            where = f"{path.name} {entry.get('id', '?')}"
            unknown = set(entry) - {"id", "promise", "operations", "tests"}
            if unknown:
                raise CommandError(f"{where}: unknown keys {sorted(unknown)}.")
            found.append(
                Requirement(
                    id=str(entry["id"]),
                    section=str(section["title"]),
                    promise=" ".join(str(entry["promise"]).split()),
                    operations=_strings(entry.get("operations", []), f"{where} operations"),
                    tests=_strings(entry["tests"], f"{where} tests"),
                )
            )
    return found


@cache
def _defined_tests(path: Path, mtime: float) -> frozenset[str]:
    """`test_x` and `TestY::test_x` defined at the top level of a test module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and item.name.startswith("test")
            }
    return frozenset(names)


def node_id_exists(node_id: str, root: Path = settings.BASE_DIR) -> bool:
    """Whether the pytest node id `tests/…/test_x.py::test_name` names a defined test."""
    file_name, _, name = node_id.partition("::")
    path = root / file_name
    if not name or not file_name.startswith("tests/") or not path.is_file():
        return False
    return name in _defined_tests(path, path.stat().st_mtime)


def registry_problems(
    requirements: list[Requirement], *, operations: Iterable[str], commands: Iterable[str]
) -> list[str]:
    """Everything in the registry that disagrees with the code, one message each."""
    operations, commands = set(operations), set(commands)
    problems = []
    seen: set[str] = set()
    named: set[str] = set()
    for req in requirements:
        if not REQUIREMENT_ID.match(req.id):
            problems.append(f"{req.id}: ids look like `IDEM-02`.")
        if req.id in seen:
            problems.append(f"{req.id}: the id is used twice.")
        seen.add(req.id)
        if not req.tests:
            problems.append(f"{req.id}: names no test.")
        for node_id in req.tests:
            if not node_id_exists(node_id):
                problems.append(f"{req.id}: no test {node_id}.")
        for name in req.operations:
            command = COMMAND.match(name)
            if command:
                if command[1] not in commands:
                    problems.append(f"{req.id}: no management command {command[1]!r}.")
            elif name != EVERY_OPERATION and name not in operations | PAGES:
                problems.append(f"{req.id}: no operation {name!r} in the URLconf.")
            named.add(name)
    problems += [f"{name} is named by no requirement." for name in sorted(operations - named)]
    return problems


def _operation_cell(name: str, anchors: dict[str, str]) -> str:
    if name in anchors:
        return f"[`{name}`](reference.md#{anchors[name]})"
    return f"`{name}`" if name != EVERY_OPERATION else "every operation"


def render_traceability(requirements: list[Requirement], anchors: dict[str, str]) -> str:
    """The table; `anchors` maps `METHOD /path` to the operation's anchor in reference.md."""
    tests = {node_id for req in requirements for node_id in req.tests}
    sections = list(dict.fromkeys(req.section for req in requirements))
    lines = [
        GENERATED.format(source="docs/requirements.yaml"),
        "",
        "# Traceability: promise → operation → test",
        "",
        "Every public promise of the API — the contract's rules and the behaviour the issues "
        "asked for — with the operations that keep it and the tests that prove it. "
        f"{len(requirements)} promises in {len(sections)} sections, proven by {len(tests)} tests; "
        f"every one of the {len(anchors)} `/v1/` operations is named by at least one promise "
        "(see the index at the end).",
        "",
        "The source is `docs/requirements.yaml`. `python manage.py generate_docs` renders this "
        "page from it and refuses a registry that names an operation that is not routed, a "
        "management command that does not exist or a test that is not defined, or that leaves "
        "an operation without a promise; `generate_docs --check` and `tests/test_traceability.py` "
        "fail when this page is stale. A test id is a pytest node id: run one with "
        "`pytest 'tests/…/test_x.py::test_name'`.",
        "",
    ]
    for section in sections:
        rows = [
            [
                f'<a id="{req.id}"></a>{req.id}',
                req.promise,
                "<br>".join(_operation_cell(name, anchors) for name in req.operations) or "—",
                "<br>".join(f"`{node_id}`" for node_id in req.tests),
            ]
            for req in requirements
            if req.section == section
        ]
        lines += [f"## {section}", "", *table(["id", "promise", "operations", "tests"], rows), ""]
    index = [
        [
            _operation_cell(name, anchors),
            ", ".join(f"[{req.id}](#{req.id})" for req in requirements if name in req.operations),
        ]
        for name in anchors
    ]
    everywhere = ", ".join(f"[{req.id}](#{req.id})" for req in requirements if req.every_operation)
    lines += [
        "## Index: operation → promises",
        "",
        f"Besides these, every operation keeps {everywhere}.",
        "",
        *table(["operation", "promises"], index),
    ]
    return "\n".join(lines) + "\n"
