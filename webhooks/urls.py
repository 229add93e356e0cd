from rest_framework.routers import SimpleRouter

from webhooks.api.event_types import EventTypeViewSet
from webhooks.api.subscriptions import WebhookSubscriptionViewSet

router = SimpleRouter(trailing_slash=False)
router.register(
    "webhook-subscriptions", WebhookSubscriptionViewSet, basename="webhook-subscription"
)
router.register("event-types", EventTypeViewSet, basename="event-type")

urlpatterns = router.urls
