from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Notifications")

    def ready(self) -> None:
        # The worker tells this app which sessions ended and that refusals were recorded,
        # through the pipeline's extension point (a flush called in the batch's transaction):
        # chargers never imports notifications (tests/test_layering.py).
        from chargers.events.batch import EXTRA_FLUSHES
        from communities.services import ACCESS_REQUEST_HOOKS

        from .hooks import after_access_request, after_batch

        if after_batch not in EXTRA_FLUSHES:
            EXTRA_FLUSHES.append(after_batch)
        # Access requests are told as soon as they are committed, not at the next scan.
        if after_access_request not in ACCESS_REQUEST_HOOKS:
            ACCESS_REQUEST_HOOKS.append(after_access_request)
