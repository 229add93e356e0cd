from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from neuronx.health import healthz, readyz
from neuronx.problems import not_found_view

# The API's routes first: Django tries the patterns in order, and they take nearly every request.
urlpatterns = [
    path("v1/", include("gtm_api.urls")),
    path("v1/", include("webhooks.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Anything else is a problem document, not Django's HTML page, whatever DEBUG says.
    re_path(r"^.*$", not_found_view),
]

handler404 = "neuronx.problems.not_found_view"
handler500 = "neuronx.problems.server_error_view"
