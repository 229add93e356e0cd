"""docs/reference.md tells the truth: every operation once, its codes, and `curl` examples that work.

Each `curl` example is parsed as a shell would split it, its body validated against the request
schema of its operation (`jsonschema`), and then sent through the Django test client to a real
tenant holding the objects the example's ids stand for; it must get the documented success status.
The versioning policy's example headers are compared with what a deprecated operation sends.
"""

import json
import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import path
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.request import Request
from rest_framework.response import Response

from consent.models import CONSENT_SCOPES
from gtm_api.management.commands.seed_demo import DEMO_ROUTING
from gtm_api.services.routing import routing_config_install
from neuronx.docs_reference import BASE_URL, CATEGORIES, documented_operations
from neuronx.errors import CATALOG
from neuronx.operations import NO_CONSENT, Deprecation, operation
from neuronx.routes import api_operations
from neuronx.views import ApiViewSet
from tests.conftest import Api, problem
from tests.factories import ConsentRecordFactory, LeadFactory
from webhooks import targets
from webhooks.schema import _to_json_schema

DOCS = Path(settings.BASE_DIR) / "docs"
REFERENCE = (DOCS / "reference.md").read_text(encoding="utf-8")
SECTION = re.compile(r'^<a id="(\w+)"></a>\n### `(\w+) (\S+)` — ', re.MULTILINE)
PLACEHOLDER_LEAD = re.compile(r"^lead_[0-9A-Z]{26}$")
PUBLIC_IP = "93.184.216.34"


@cache
def openapi() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def sections() -> dict[str, tuple[str, str, str]]:
    """operationId → (method, path, section text) of every operation in reference.md."""
    found = {}
    matches = list(SECTION.finditer(REFERENCE))
    end = REFERENCE.index("\n## Response bodies")
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        stop = following.start() if following else end
        found[match[1]] = (match[2], match[3], REFERENCE[match.start() : stop])
    return found


@dataclass
class Curl:
    operation_id: str
    title: str
    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    form: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        assert self.url.startswith(BASE_URL), self.url
        return self.url[len(BASE_URL) :]


def parse_curl(operation_id: str, title: str, command: str) -> Curl:
    args = shlex.split(command.replace("\\\n", " "))
    assert args[0] == "curl", command
    curl = Curl(operation_id, title)
    rest = iter(args[1:])
    for arg in rest:
        if arg == "-s":
            continue
        if arg == "-X":
            curl.method = next(rest)
        elif arg == "-H":
            name, _, value = next(rest).partition(": ")
            curl.headers[name] = value
        elif arg == "-d":
            curl.body = next(rest)
        elif arg == "-F":
            name, _, value = next(rest).partition("=")
            curl.form[name] = value
        else:
            assert not curl.url and not arg.startswith("-"), (arg, command)
            curl.url = arg
    return curl


def curl_examples() -> list[Curl]:
    found = []
    for operation_id, (_, _, text) in sections().items():
        for title, command in re.findall(
            r"^\*\*Example(?:: (.*?))?\*\*\n\n```sh\n(.*?)\n```", text, re.MULTILINE | re.DOTALL
        ):
            found.append(parse_curl(operation_id, title, command))
    return found


EXAMPLES = curl_examples()


def operation_schema(curl: Curl) -> dict[str, Any]:
    method, path_, _ = sections()[curl.operation_id]
    return openapi()["paths"][path_][method.lower()]


# -- the page ---------------------------------------------------------------------------------


def test_the_reference_documents_every_operation_once_by_category():
    documented = sections()
    in_schema = {
        operation["operationId"]: (method.upper(), path_)
        for path_, methods in openapi()["paths"].items()
        for method, operation in methods.items()
    }
    assert {k: v[:2] for k, v in documented.items()} == in_schema
    assert len(SECTION.findall(REFERENCE)) == len(in_schema)
    routed = {(o.method, o.path) for o in api_operations()}
    assert set(in_schema.values()) == routed

    headings = re.findall(r"^## (\d\. .+)$", REFERENCE, re.MULTILINE)
    assert headings == [title for title, _ in CATEGORIES.values()]
    declarations = {(o.method, o.path): o.operation for o in api_operations() if o.operation}
    expected = documented_operations(openapi(), declarations)
    for op in expected:
        title = CATEGORIES[op.category][0]
        category_text = REFERENCE.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert f'<a id="{op.operation_id}"></a>' in category_text, (op.operation_id, title)
    # The contract's categories: lead reads are status (6), imports and consent ingestion (1).
    by_id = {op.operation_id: op.category for op in expected}
    assert by_id["leads_list"] == by_id["leads_status"] == "status"
    assert by_id["leads_create"] == by_id["lead_imports_create"] == "ingestion"


def test_every_operation_lists_exactly_its_error_codes_linked_to_the_catalog():
    errors_md = (DOCS / "errors.md").read_text(encoding="utf-8")
    declared = {(o.method, o.path): o.operation for o in api_operations() if o.operation}
    for operation_id, (method, path_, text) in sections().items():
        linked = re.findall(r"\[`(\w+)`\]\(errors\.md#(\w+)\)", text)
        assert all(code == target for code, target in linked), operation_id
        codes = [code for code, _ in linked]
        assert sorted(codes) == sorted(declared[method, path_].error_codes), operation_id
        for code in codes:
            assert f'<a id="{code}"></a>' in errors_md and code in CATALOG, code
        for code in codes:
            row = next(line for line in text.splitlines() if f"errors.md#{code})" in line)
            assert row.startswith(f"| {CATALOG[code].status} |"), (operation_id, code)


def test_every_curl_example_calls_its_operation_the_way_the_api_requires():
    documented = sections()
    assert {curl.operation_id for curl in EXAMPLES} == set(documented)
    keys = [curl.headers.get("Idempotency-Key") for curl in EXAMPLES]
    assert len([k for k in keys if k]) == len({k for k in keys if k}), "keys are reused"
    for curl in EXAMPLES:
        method, path_, _ = documented[curl.operation_id]
        template = re.sub(r"\\\{\w+\\\}", r"\\$[A-Z_]+", re.escape(path_))
        assert curl.method == method, curl
        assert re.fullmatch(template, curl.path), (curl.path, path_)
        assert curl.headers["Authorization"] == "Bearer $NEURONX_KEY", curl
        if method in ("POST", "PATCH"):
            assert curl.headers.get("Idempotency-Key"), curl
        if curl.body is not None:
            assert curl.headers.get("Content-Type") == "application/json", curl
        assert not (curl.body is not None and curl.form), curl


def test_every_example_body_validates_against_the_request_schema():
    components = openapi()["components"]["schemas"]
    checked = 0
    for curl in EXAMPLES:
        request = operation_schema(curl).get("requestBody", {}).get("content", {})
        if curl.body is not None:
            schema = _to_json_schema(request["application/json"]["schema"], components)
            jsonschema.Draft202012Validator(schema).validate(json.loads(curl.body))
            checked += 1
        elif curl.form:
            form = _to_json_schema(request["multipart/form-data"]["schema"], components)
            assert set(form["required"]) <= set(curl.form) <= set(form["properties"]), curl
            checked += 1
        else:
            assert not request.get("application/json", {}).get("schema", {}).get("required"), curl
    # Every request example of the schema is one of the curl examples.
    in_schema = sum(
        len(content.get("examples", {}))
        for methods in openapi()["paths"].values()
        for operation in methods.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
    )
    assert in_schema <= checked


def test_a_body_the_schema_refuses_is_caught():
    """The validation above has teeth: the lead example without a required field fails it."""
    curl = next(c for c in EXAMPLES if c.operation_id == "leads_create")
    body = json.loads(curl.body or "{}")
    del body["first_name"]
    schema = _to_json_schema(
        operation_schema(curl)["requestBody"]["content"]["application/json"]["schema"],
        openapi()["components"]["schemas"],
    )
    with pytest.raises(jsonschema.ValidationError, match="first_name"):
        jsonschema.Draft202012Validator(schema).validate(body)


# -- the examples against a real tenant ---------------------------------------------------------

# Which lead a `$LEAD_ID` (or a `lead_…` id in a body) stands for: stage and consents granted.
LEAD_FOR = {
    "leads_qualify": ("new", ["data.profiling"]),
    "leads_route": ("qualified", []),
    "appointments_create": ("routed", ["contact.email", "contact.phone"]),
    "payments_create": ("routed", ["payment.processing"]),
}
CSV = (
    b"email,first_name,last_name,source\n"
    b"grace@acme-corp.com,Grace,Hopper,csv\n"
    b"not-an-email,Alan,Turing,csv\n"
)


class World:
    """alice's objects, made on first use, for the shell variables an example names."""

    def __init__(self, api: Api, operation_id: str, capture: Any) -> None:
        self.api, self.operation_id, self.capture = api, operation_id, capture
        self.made: dict[str, str] = {}

    def _ok(self, response: Any, status: int) -> Any:
        assert response.status_code == status, response.content
        return response.json()

    def _lead(self, stage: str = "new", consents: list[str] | None = None) -> str:
        lead = LeadFactory(tenant=self.api.tenant, stage=stage, phone="+442079460958")
        for scope in consents or []:
            ConsentRecordFactory(lead=lead, scope=scope)
        return lead.id

    def _soon(self) -> tuple[str, str]:
        start = timezone.now() + timedelta(days=3)
        return start.isoformat(), (start + timedelta(minutes=30)).isoformat()

    def value(self, name: str) -> str:
        if name not in self.made:
            self.made[name] = getattr(self, name.lower())()
        return self.made[name]

    def lead_id(self) -> str:
        stage, consents = LEAD_FOR.get(self.operation_id, ("new", []))
        if self.operation_id == "leads_route":
            routing_config_install(tenant=self.api.tenant, config=DEMO_ROUTING)
        return self._lead(stage, consents)

    def appointment_id(self) -> str:
        starts_at, ends_at = self._soon()
        body = {
            "lead_id": self._lead("routed", ["contact.email"]),
            "starts_at": starts_at,
            "ends_at": ends_at,
            "timezone": "Europe/London",
            "channel": "video",
        }
        return self._ok(self.api.post("/v1/appointments", body), 201)["id"]

    def payment_id(self) -> str:
        body = {
            "lead_id": self._lead("routed", ["payment.processing"]),
            "amount": 49900,
            "currency": "EUR",
        }
        return self._ok(self.api.post("/v1/payments", body), 201)["id"]

    def lead_import_id(self) -> str:
        headers = {"Authorization": f"Bearer {self.api.key}", "Idempotency-Key": "world-import"}
        with self.capture(execute=True):
            response = self.api.client.post(
                "/v1/lead-imports",
                {"file": SimpleUploadedFile("leads.csv", CSV, content_type="text/csv")},
                headers=headers,
            )
        job = self._ok(response, 202)
        assert self._ok(self.api.get(f"/v1/lead-imports/{job['id']}"), 200)["status"] == (
            "completed_with_errors"
        )
        return job["id"]

    def webhook_subscription_id(self) -> str:
        body = {"url": "https://hooks.example-crm.com/world", "event_types": ["lead.created"]}
        return self._ok(self.api.post("/v1/webhook-subscriptions", body), 201)["id"]

    def delivery_id(self) -> str:
        """A finished delivery: a test ping, canceled by pausing the subscription, resumed."""
        subscription = f"/v1/webhook-subscriptions/{self.value('WEBHOOK_SUBSCRIPTION_ID')}"
        delivery = self._ok(self.api.post(f"{subscription}/test"), 202)["id"]
        self._ok(self.api.patch(subscription, {"is_active": False}), 200)
        self._ok(self.api.patch(subscription, {"is_active": True}), 200)
        return delivery


def _bookable(body: Any) -> Any:
    """Move an example's appointment times into the bookable window (the next 366 days),
    keeping their time of day and duration; every other field is sent as documented."""
    if not isinstance(body, dict) or "starts_at" not in body:
        return body
    starts = datetime.fromisoformat(body["starts_at"])
    now = timezone.now()
    if now + timedelta(hours=1) <= starts <= now + timedelta(days=300):
        return body
    shift = timedelta(days=(now.date() - starts.date()).days + 2)
    moved = dict(body)
    for key in ("starts_at", "ends_at"):
        if key in moved:
            moved[key] = (datetime.fromisoformat(moved[key]) + shift).isoformat()
    return moved


def _fill_lead_ids(value: Any, world: World) -> Any:
    if isinstance(value, dict):
        return {k: _fill_lead_ids(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_lead_ids(v, world) for v in value]
    if isinstance(value, str) and PLACEHOLDER_LEAD.match(value):
        return world.value("LEAD_ID")
    return value


@pytest.fixture
def edge_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook and import hosts of the examples resolve to a public address (DNS is the edge)."""
    monkeypatch.setattr(targets, "resolve", lambda host, port: [PUBLIC_IP])


@pytest.mark.parametrize(
    "curl", EXAMPLES, ids=[f"{c.operation_id}:{c.title or 'example'}" for c in EXAMPLES]
)
def test_every_curl_example_succeeds_against_a_real_tenant(
    curl, alice, edge_dns, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    world = World(alice, curl.operation_id, django_capture_on_commit_callbacks)
    target = re.sub(r"\$([A-Z_]+)", lambda m: world.value(m[1]), curl.path)
    headers = {
        name: value.replace("$NEURONX_KEY", alice.key or "")
        for name, value in curl.headers.items()
        if name != "Content-Type"
    }
    if curl.form:
        data = {
            name: SimpleUploadedFile("leads.csv", CSV, content_type="text/csv")
            if value == "@leads.csv"
            else value
            for name, value in curl.form.items()
        }
        response = alice.client.post(target, data, headers=headers)
    elif curl.method == "GET":
        response = alice.client.get(target, headers=headers)
    else:
        body = b""
        if curl.body is not None:
            body = json.dumps(_bookable(_fill_lead_ids(json.loads(curl.body), world))).encode()
        content_type = curl.headers.get("Content-Type", "")
        response = alice.client.generic(
            curl.method, target, body, content_type=content_type, headers=headers
        )

    documented = [s for s in operation_schema(curl)["responses"] if s.startswith("2")]
    assert [str(response.status_code)] == documented, response.content[:800]


# -- the versioning policy ----------------------------------------------------------------------

POLICY_SINCE = datetime(2027, 1, 1, tzinfo=UTC)
POLICY_SUNSET = datetime(2027, 7, 1, tzinfo=UTC)


class PolicyExampleViewSet(ApiViewSet):
    @operation(
        rate_class="read",
        scope="leads:read",
        consent=NO_CONSENT,
        usage=None,
        idempotent=False,
        deprecation=Deprecation(
            since=POLICY_SINCE, sunset=POLICY_SUNSET, successor="/v1/replacement"
        ),
    )
    def list(self, request: Request) -> Response:
        return Response({"results": [], "next": None, "previous": None})


urlpatterns = [path("v1/policy-example", PolicyExampleViewSet.as_view({"get": "list"}))]


@pytest.mark.urls(__name__)
def test_the_versioning_policy_shows_what_a_deprecated_operation_sends(alice, anonymous):
    policy = " ".join((DOCS / "versioning.md").read_text(encoding="utf-8").split())
    for response in (alice.get("/v1/policy-example"), anonymous.get("/v1/policy-example")):
        for name in ("Deprecation", "Sunset", "Link"):
            assert f"`{name}: {response[name]}`" in policy, (name, response[name])
    problem(anonymous.get("/v1/policy-example"), 401, "authentication_failed")
    assert f"`Deprecation: @{int(POLICY_SINCE.timestamp())}` (2027-01-01T00:00:00Z)" in policy


def test_the_policy_says_which_operations_are_deprecated():
    policy = " ".join((DOCS / "versioning.md").read_text(encoding="utf-8").split())
    deprecated = [o for o in api_operations() if o.operation and o.operation.deprecation]
    says_none = "no `/v1/` operation is deprecated" in policy
    assert says_none == (not deprecated), [f"{o.method} {o.path}" for o in deprecated]


def test_scopes_in_the_examples_are_real_consent_scopes():
    scopes = {
        record["scope"]
        for curl in EXAMPLES
        if curl.body
        for record in [json.loads(curl.body), *json.loads(curl.body).get("consents", [])]
        if isinstance(record, dict) and "scope" in record
    }
    assert scopes and scopes <= set(CONSENT_SCOPES)
