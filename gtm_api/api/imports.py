from neuronx.views import ApiViewSet


class LeadImportViewSet(ApiViewSet):
    pass
