from django.apps import AppConfig


class NeuronxConfig(AppConfig):
    name = "neuronx"
    verbose_name = "NeuronX platform kernel"

    def ready(self) -> None:
        from neuronx import checks, schema  # noqa: F401  (registers system checks and extensions)
