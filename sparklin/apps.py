from django.apps import AppConfig


class SparklinConfig(AppConfig):
    name = "sparklin"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
