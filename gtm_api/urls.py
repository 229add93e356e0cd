from rest_framework.routers import SimpleRouter

from gtm_api.api.leads import LeadViewSet

router = SimpleRouter(trailing_slash=False)
router.register("leads", LeadViewSet, basename="lead")

urlpatterns = router.urls
