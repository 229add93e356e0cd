from neuronx.views import ApiViewSet


class RoutingViewSet(ApiViewSet):
    pass
