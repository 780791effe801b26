from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PowerConfig(AppConfig):
    name = "power"
    verbose_name = _("Power management")
