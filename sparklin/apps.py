from django.apps import AppConfig


class SparklinConfig(AppConfig):
    name = "sparklin"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
