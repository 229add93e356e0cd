"""docs/traceability.md cannot drift: every test it names exists, every operation it names is
routed, every operation is named, and the committed page is what the registry renders."""

import importlib
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command, get_commands

from neuronx import traceability
from neuronx.management.commands import generate_docs
from neuronx.routes import api_operations
from neuronx.traceability import (
    EVERY_OPERATION,
    PAGES,
    node_id_exists,
    registry_problems,
    requirements_load,
)

REQUIREMENTS = requirements_load()
OPERATIONS = {f"{o.method} {o.path}" for o in api_operations()}
CONTRACT_SECTIONS = [
    "§1 The Sales OS boundary",
    "§2 Global rules",
    "§3 Consent",
    "§4 Usage metering",
    "§5 Endpoints",
    "§6 Outbound webhooks",
    "§7 Commands and operations",
]


def test_the_committed_page_is_what_the_registry_renders():
    committed = (Path(settings.BASE_DIR) / "docs" / "traceability.md").read_text(encoding="utf-8")
    assert committed == generate_docs.render_traceability_page(generate_docs.Sources())


def test_every_test_id_imports_to_a_test_function():
    node_ids = {node_id for req in REQUIREMENTS for node_id in req.tests}
    assert len(node_ids) >= 100
    for node_id in sorted(node_ids):
        file_name, *names = node_id.split("::")
        module = importlib.import_module(file_name.removesuffix(".py").replace("/", "."))
        found = module
        for name in names:
            found = getattr(found, name, None)
            assert found is not None, node_id
        assert callable(found) and names[-1].startswith("test_"), node_id


def test_every_named_operation_is_routed_and_every_operation_is_named():
    named = {name for req in REQUIREMENTS for name in req.operations}
    routes = {name for name in named if not name.startswith("manage.py ")} - {EVERY_OPERATION}
    assert routes <= OPERATIONS | PAGES, routes - OPERATIONS - PAGES
    assert named >= OPERATIONS, OPERATIONS - named
    commands = {name.split()[1] for name in named if name.startswith("manage.py ")}
    assert commands <= set(get_commands()), commands - set(get_commands())
    assert registry_problems(REQUIREMENTS, operations=OPERATIONS, commands=get_commands()) == []


def test_every_contract_section_has_promises_with_stable_unique_ids():
    sections = list(dict.fromkeys(req.section for req in REQUIREMENTS))
    assert sections[: len(CONTRACT_SECTIONS)] == CONTRACT_SECTIONS
    for section in sections:
        assert sum(req.section == section for req in REQUIREMENTS) >= 1, section
    ids = [req.id for req in REQUIREMENTS]
    assert len(ids) == len(set(ids))
    assert 40 <= len(ids) <= 100
    assert all(traceability.REQUIREMENT_ID.match(i) for i in ids)


def test_the_brief_examples_are_traced():
    """The promises the issues name are rows, each proven by the test that proves it."""
    proven_by = {node_id: req.id for req in REQUIREMENTS for node_id in req.tests}
    for node_id in (
        "tests/gtm_api/test_leads_api.py::test_duplicate_is_409_with_existing_id",
        "tests/gtm_api/test_boundary.py::test_every_public_operation_refuses_to_cross_the_boundary",
        "tests/webhooks/test_delivery.py::test_every_event_arrives_signed_and_verifiable",
        "tests/neuronx/test_idempotency.py::test_same_key_and_body_replays_the_first_outcome_and_does_nothing_twice",
    ):
        assert node_id in proven_by, node_id


@pytest.mark.parametrize(
    ("node_id", "exists"),
    [
        ("tests/test_traceability.py::test_the_brief_examples_are_traced", True),
        ("tests/test_traceability.py::test_that_was_renamed", False),
        ("tests/test_traceability.py", False),
        ("tests/missing_module.py::test_x", False),
        ("neuronx/traceability.py::requirements_load", False),
    ],
)
def test_node_ids_are_resolved_against_the_test_files(node_id, exists):
    assert node_id_exists(node_id) is exists


REGISTRY_WITH_DRIFT = """
sections:
  - title: "§1 The Sales OS boundary"
    requirements:
      - id: BND-01
        promise: Only one operation is named.
        operations:
          - POST /v1/leads
          - POST /v1/leads/{id}/promote
          - manage.py promote_lead
        tests:
          - tests/test_traceability.py::test_that_was_renamed
      - id: BND-01
        promise: The same id twice.
        operations: every operation
        tests: []
"""


def test_a_registry_that_drifted_from_the_code_is_refused(tmp_path, monkeypatch):
    registry = tmp_path / "requirements.yaml"
    registry.write_text(REGISTRY_WITH_DRIFT, encoding="utf-8")
    problems = registry_problems(
        requirements_load(registry), operations=OPERATIONS, commands=get_commands()
    )
    assert "BND-01: no test tests/test_traceability.py::test_that_was_renamed." in problems
    assert "BND-01: no operation 'POST /v1/leads/{id}/promote' in the URLconf." in problems
    assert "BND-01: no management command 'promote_lead'." in problems
    assert "BND-01: the id is used twice." in problems
    assert "BND-01: names no test." in problems
    assert "GET /v1/leads/{id}/status is named by no requirement." in problems
    assert "POST /v1/leads is named by no requirement." not in problems

    monkeypatch.setattr(traceability, "REGISTRY", registry)
    monkeypatch.setattr(generate_docs, "DOCS_DIR", tmp_path)
    with pytest.raises(CommandError, match=r"requirements\.yaml disagrees with the code"):
        call_command("generate_docs", check=True)
