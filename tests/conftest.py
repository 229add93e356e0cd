"""The fixed cast: tenants `alice` and `bob` with API keys, and `charlie`, who must always get 404."""

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from neuronx.models import ApiKey, Tenant
from neuronx.tenancy import api_key_create
from tests.factories import TenantFactory


@dataclass
class Api:
    """An integrator's HTTP client: JSON in and out, bearer key, idempotency keys by default."""

    client: Client
    key: str | None
    tenant: Tenant | None = None
    api_key: ApiKey | None = None

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        sent = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        sent.update(headers or {})
        return sent

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotency_key: str | None = "auto",
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = self._headers(headers)
        if idempotency_key == "auto":
            idempotency_key = f"test-{uuid.uuid4()}"
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.generic(method, path, data, content_type=content_type, headers=sent)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.send("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.send("PATCH", path, body, **kwargs)


def make_api(slug: str, scopes: list[str] | None = None) -> Api:
    tenant = TenantFactory(slug=slug)
    issued = api_key_create(tenant=tenant, name=f"{slug}-test", scopes=scopes)
    return Api(client=Client(), key=issued.plaintext, tenant=tenant, api_key=issued.api_key)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _plain_http(settings: Any) -> None:
    # The test client speaks http; the production https redirect is tested on its own.
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def alice(db: None) -> Api:
    return make_api("alice")


@pytest.fixture
def bob(db: None) -> Api:
    return make_api("bob")


@pytest.fixture
def charlie(db: None) -> Api:
    return make_api("charlie")


@pytest.fixture
def anonymous(db: None) -> Api:
    return Api(client=Client(), key=None)


def lead_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "Ada.Lovelace@Analytical-Engines.com",
        "phone": "+44 20 7946 0958",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "job_title": "VP Engineering",
        "country": "gb",
        "source": "web_form",
        "attributes": {"utm_campaign": "spring", "employees": 120},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is an RFC 9457 problem with `status` and `code`; return its body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title", "detail", "request_id"} <= set(body)
    assert body["request_id"] == response["X-Request-ID"]
    return body


DRILLS = Path(__file__).resolve().parent / "drills"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fault drills (tests/drills, docs/faults.md) run only when named: `make drills`."""
    if collection_path != DRILLS:
        return None
    named = (config.invocation_params.dir / arg.split("::")[0] for arg in config.args)
    return not any(path.resolve().is_relative_to(DRILLS) for path in named)
