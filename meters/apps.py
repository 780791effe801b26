from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MetersConfig(AppConfig):
    name = "meters"
    verbose_name = _("Meters")

    def ready(self):
        # The worker hands connector 0 / EVSE 0 samples to whoever registered (chargers cannot
        # import meters): OCPP main meters become readings there.
        from chargers.events.main_meter import register_consumer

        from .ocpp import record_main_meter

        register_consumer(record_main_meter)
