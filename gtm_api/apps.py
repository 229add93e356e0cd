from django.apps import AppConfig


class GtmApiConfig(AppConfig):
    name = "gtm_api"
    verbose_name = "GTM API (Sales OS)"

    def ready(self) -> None:
        from gtm_api import checks  # noqa: F401  (registers the boundary check)
