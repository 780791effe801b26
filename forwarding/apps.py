from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ForwardingConfig(AppConfig):
    name = "forwarding"
    verbose_name = _("Operators (OCPP forwarding)")

    def ready(self) -> None:
        # The worker applies the gateway's forwarding events (state, frame log) through the
        # pipeline's extension point: chargers never imports this app (tests/test_layering.py).
        from chargers.events.handlers import register

        from . import events

        register("operator_state", events.apply_state, events.flush)
        register("operator_frame", events.apply_frame, events.flush)
