from neuronx.views import ApiViewSet


class LeadStatusViewSet(ApiViewSet):
    pass
