"""Deployment probes: `/healthz` (the process answers) and `/readyz` (its dependencies do)."""

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from neuronx.celery import app as celery_app
from neuronx.problems import problem_response

logger = logging.getLogger("neuronx.health")


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    key = "neuronx:readyz"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")


def _broker() -> None:
    if not settings.CELERY_BROKER_URL:
        return  # in-process tasks: no broker to reach
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "cache": _cache, "broker": _broker}


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:
            logger.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    if all(result["ok"] for result in results.values()):
        return JsonResponse({"status": "ready", "checks": results})
    failing = ", ".join(name for name, result in results.items() if not result["ok"])
    return problem_response(
        "service_unavailable",
        f"Not ready: {failing} unavailable.",
        checks=results,
        headers={"Retry-After": "5"},
    )
