"""The OpenAPI document, the offline docs page and the system check that every operation declares
its contract (rate class, scope, consent, usage, idempotency)."""

import re
import types

import pytest
from django.core import checks
from django.http import HttpResponse
from django.urls import include, path, resolve
from drf_spectacular.validation import validate_schema
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from neuronx.checks import check_operations_declared, undeclared_operations
from neuronx.errors import CATALOG
from neuronx.operations import NO_CONSENT, operation
from neuronx.views import ApiViewSet
from tests.conftest import problem

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete", "head"}


@pytest.fixture
def schema(anonymous) -> dict:
    response = anonymous.client.get("/v1/schema", {"format": "json"})
    assert response.status_code == 200, response.content[:500]
    return response.json()


def _operations(schema: dict):
    for route, item in schema["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield route, method, op


def _declared(route: str, method: str):
    """The `Operation` the runtime uses for this schema operation."""
    match = resolve(re.sub(r"\{[^}]+\}", "lead_01TEST", route))
    action = match.func.actions[method]
    return getattr(match.func.cls, action).operation


def test_schema_is_a_valid_openapi_3_document_served_without_auth(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)
    assert schema["info"]["title"] == "NeuronX GTM API"
    assert list(_operations(schema)), "the schema documents no operation"


def test_schema_is_served_as_yaml_by_default(anonymous):
    response = anonymous.client.get("/v1/schema")
    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_every_operation_carries_its_declared_contract(schema):
    for route, method, op in _operations(schema):
        extension = op.get("x-neuronx-operation")
        assert extension is not None, (method, route)
        assert extension == _declared(route, method).as_extension(), (method, route)
        assert set(extension) >= {"rate_class", "scope", "consent", "usage", "idempotent"}
        assert extension["rate_class"] in {"read", "write", "bulk", "webhooks"}


def test_post_and_patch_require_the_idempotency_key_header(schema):
    seen = set()
    for route, method, op in _operations(schema):
        headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
        if method in {"post", "patch"}:
            seen.add(method)
            key = headers.get("Idempotency-Key")
            assert key is not None, (method, route)
            assert key["required"] is True
            assert key["schema"]["maxLength"] == 255 and key["schema"]["minLength"] == 1
            assert op["x-neuronx-operation"]["idempotent"] is True
            assert {"400", "409", "422"} <= set(op["responses"]), (method, route)
        else:
            assert "Idempotency-Key" not in headers, (method, route)
        assert "X-Request-ID" in headers
    assert seen == {"post", "patch"}


def test_every_operation_documents_the_problems_it_can_return(schema):
    problem_schema = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "request_id"} <= set(
        problem_schema["required"]
    )
    assert set(problem_schema["properties"]["code"]["enum"]) == set(CATALOG)
    for route, method, op in _operations(schema):
        documented: set[str] = set()
        for status, response in op["responses"].items():
            content = response.get("content", {}).get("application/problem+json")
            if int(status) >= 400:
                assert content is not None, (method, route, status)
                assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
                for code, example in content["examples"].items():
                    assert CATALOG[code].status == int(status), code
                    assert example["value"]["code"] == code
                    documented.add(code)
        assert documented == set(_declared(route, method).error_codes), (method, route)
        assert {
            "authentication_failed",
            "permission_denied",
            "rate_limited",
            "internal_error",
        } <= documented
        assert "Retry-After" in op["responses"]["429"]["headers"]
        for response in op["responses"].values():
            assert {"X-Request-ID", "RateLimit", "RateLimit-Policy"} <= set(response["headers"])


def test_operations_are_secured_by_the_bearer_api_key(schema):
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for route, method, op in _operations(schema):
        assert op.get("security") == [{"ApiKey": []}], (method, route)


def test_documented_operations_are_exactly_the_routed_ones(schema):
    documented = {(method.upper(), route) for route, method, _ in _operations(schema)}
    assert ("POST", "/v1/leads") in documented
    assert ("PATCH", "/v1/leads/{id}") in documented
    assert ("GET", "/v1/schema") not in documented
    for method, route in documented:
        assert _declared(route, method.lower()) is not None


def test_docs_page_is_self_contained(anonymous):
    response = anonymous.client.get("/v1/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"'<>]+", html)
    assert not re.search(r"""(?:src|href)\s*=\s*["']//""", html)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts and all(a.startswith("/static/") for a in assets), assets
    assert "/v1/schema" in html


def test_docs_assets_are_served_locally(anonymous):
    html = anonymous.client.get("/v1/docs").content.decode()
    assets = re.findall(r"""(?:src|href)\s*=\s*["'](/static/[^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        response = anonymous.client.get(asset)
        assert response.status_code == 200, asset
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 0, asset


def test_a_missing_static_asset_is_a_404(anonymous):
    problem(anonymous.client.get("/static/drf_spectacular_sidecar/nope.js"), 404, "not_found")


# -- the system check ----------------------------------------------------------------------------


def test_every_real_operation_is_declared():
    assert undeclared_operations() == []
    errors = [m for m in checks.run_checks(tags=[checks.Tags.urls]) if m.id == "neuronx.E001"]
    assert errors == []


class _UndeclaredViewSet(ApiViewSet):
    def list(self, request):  # no @operation
        return Response([])

    @operation(
        rate_class="write", scope="leads:write", consent=NO_CONSENT, usage=None, idempotent=False
    )
    def create(self, request):  # declared, but a POST that is not idempotent
        return Response({}, status=201)


class _DeclaredViewSet(ApiViewSet):
    @operation(
        rate_class="read", scope="leads:read", consent=NO_CONSENT, usage=None, idempotent=False
    )
    def list(self, request):
        return Response([])


def _plain_view(request):
    return HttpResponse("hello")


def _urlconf() -> types.ModuleType:
    router = SimpleRouter(trailing_slash=False)
    router.register("bad", _UndeclaredViewSet, basename="bad")
    router.register("good", _DeclaredViewSet, basename="good")
    module = types.ModuleType("tests.neuronx._undeclared_urls")
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("v1/", include(router.urls)),
        path("v1/plain", _plain_view, name="plain"),
        path("outside", _plain_view, name="outside"),
    ]
    return module


def test_the_check_reports_undeclared_and_non_idempotent_operations(settings):
    settings.ROOT_URLCONF = _urlconf()
    problems = undeclared_operations()
    assert len(problems) == 3, problems
    assert any(
        "GET" in p and "_UndeclaredViewSet.list" in p and "no operation" in p for p in problems
    ), problems
    assert any(p.startswith("POST") and "idempotent" in p for p in problems), problems
    assert any("v1/plain" in p and "not served by an ApiViewSet" in p for p in problems), problems
    assert not any("good" in p or "outside" in p for p in problems), problems
    messages = check_operations_declared(None)
    assert [m.id for m in messages] == ["neuronx.E001"] * 3
    assert all(m.level == checks.ERROR for m in messages)


def test_the_check_runs_as_a_system_check(settings):
    settings.ROOT_URLCONF = _urlconf()
    found = [m for m in checks.run_checks(tags=[checks.Tags.urls]) if m.id == "neuronx.E001"]
    assert len(found) == 3


def test_an_undeclared_action_is_never_served(settings, alice):
    settings.ROOT_URLCONF = _urlconf()
    problem(alice.get("/v1/bad"), 405, "method_not_allowed")
    assert alice.get("/v1/good").status_code == 200


def test_the_real_urlconf_is_restored_after_patching():
    # Runs after the tests above in file order: the patched URLconf must not have leaked.
    assert undeclared_operations() == []
    assert resolve("/v1/leads").func.cls.__name__ == "LeadViewSet"
