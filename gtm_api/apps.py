from django.apps import AppConfig


class GtmApiConfig(AppConfig):
    name = "gtm_api"
    verbose_name = "GTM API (Sales OS)"
