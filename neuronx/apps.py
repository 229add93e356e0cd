from django.apps import AppConfig


class NeuronxConfig(AppConfig):
    name = "neuronx"
    verbose_name = "NeuronX platform kernel"

    def ready(self) -> None:
        # Registers system checks, schema extensions and the API key cache's signal receivers.
        from neuronx import checks, schema, tenancy  # noqa: F401
