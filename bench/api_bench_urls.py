"""The public URLconf plus one constant-JSON view, the baseline of `bench/api_bench.py`.

Served only by the gunicorn that the bench starts (`bench.api_bench_settings`), so the baseline
runs on the same workers, middleware and settings as the API without being part of it.
"""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

CONSTANT = {"status": "ok", "service": "neuronx", "version": 1}


def constant(request: HttpRequest) -> JsonResponse:
    return JsonResponse(CONSTANT)


urlpatterns = [
    path("bench/constant", constant),
    path("", include("neuronx.urls")),
]

handler404 = "neuronx.problems.not_found_view"
handler500 = "neuronx.problems.server_error_view"
