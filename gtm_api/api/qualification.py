from neuronx.views import ApiViewSet


class QualificationViewSet(ApiViewSet):
    pass
