from neuronx.views import ApiViewSet


class PaymentViewSet(ApiViewSet):
    pass
