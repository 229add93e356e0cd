"""A URLconf with one deprecated operation, to prove the Deprecation/Sunset machinery."""

from datetime import UTC, datetime

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from neuronx.operations import NO_CONSENT, Deprecation, operation
from neuronx.views import ApiViewSet

SINCE = datetime(2026, 6, 1, tzinfo=UTC)
SUNSET = datetime(2027, 6, 1, tzinfo=UTC)


class LegacyViewSet(ApiViewSet):
    @operation(
        rate_class="read",
        scope="leads:read",
        consent=NO_CONSENT,
        usage=None,
        idempotent=False,
        deprecation=Deprecation(since=SINCE, sunset=SUNSET, successor="/v1/leads"),
    )
    def list(self, request: Request) -> Response:
        return Response({"results": []})


urlpatterns = [path("v1/legacy-leads", LegacyViewSet.as_view({"get": "list"}))]
