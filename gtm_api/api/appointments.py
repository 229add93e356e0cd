from neuronx.views import ApiViewSet


class AppointmentViewSet(ApiViewSet):
    pass
