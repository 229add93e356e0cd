import pytest
from django.test import Client

from neuronx import health

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_auth():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


def test_readyz_checks_database_cache_and_broker():
    body = Client().get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_a_503_problem_when_a_dependency_is_down(monkeypatch):
    def broken() -> None:
        raise ConnectionError("redis://secret@cache:6379 refused")

    monkeypatch.setitem(health.CHECKS, "cache", broken)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["checks"]["cache"] == {
        "ok": False,
        "error": "ConnectionError",
        "ms": body["checks"]["cache"]["ms"],
    }
    assert "secret" not in response.content.decode()


def test_production_redirects_plain_http_to_https_but_not_probes(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    response = client.get("/v1/leads")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/leads", secure=True).status_code == 401
