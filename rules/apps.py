from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RulesConfig(AppConfig):
    name = "rules"
    verbose_name = _("Rules of use")

    def ready(self) -> None:
        # The worker applies the gateway's "access" events (refusals, scans) with this app's
        # handler: chargers.events knows no app to its right, so the handler registers itself.
        from chargers.events.handlers import HANDLERS

        from .events import apply_access

        HANDLERS["access"] = apply_access
