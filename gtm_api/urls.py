from rest_framework.routers import SimpleRouter

from gtm_api.api.appointments import AppointmentViewSet
from gtm_api.api.imports import LeadImportViewSet
from gtm_api.api.leads import LeadViewSet
from gtm_api.api.payments import PaymentViewSet
from gtm_api.api.qualification import QualificationViewSet
from gtm_api.api.routing import RoutingViewSet
from gtm_api.api.status import LeadStatusViewSet

router = SimpleRouter(trailing_slash=False)
router.register("leads", LeadViewSet, basename="lead")
# Lifecycle actions on a lead (/v1/leads/{id}/status, /qualify, /route), one viewset per
# category; the status read, the most requested, first of them.
router.register("leads", LeadStatusViewSet, basename="lead-status")
router.register("leads", QualificationViewSet, basename="lead-qualification")
router.register("leads", RoutingViewSet, basename="lead-routing")
router.register("appointments", AppointmentViewSet, basename="appointment")
router.register("payments", PaymentViewSet, basename="payment")
router.register("lead-imports", LeadImportViewSet, basename="lead-import")

urlpatterns = router.urls
