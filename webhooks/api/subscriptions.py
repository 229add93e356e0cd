from neuronx.views import ApiViewSet


class WebhookSubscriptionViewSet(ApiViewSet):
    pass
