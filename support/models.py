"""Support tickets: a person's "Report a problem", kept for platform staff (the admin) and
e-mailed to the support address.

A ticket is not tenant data: it belongs to Sparklin's support desk, and no community's managers
list it. It records the community and page it came from (`source_community`, a snapshot of the
name) for context, so the model is global like `UnknownCharger`, on purpose."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from phonenumber_field.modelfields import PhoneNumberField

from communities.models import Community


def _screenshot_path(ticket: "Ticket", filename: str) -> str:
    # Never the uploaded name: a random one, under a folder the web server does not serve
    # (MEDIA_ROOT is not published; staff get the file through support.views.screenshot).
    extension = "jpg" if filename.lower().endswith(".jpg") else "png"
    return f"support/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.{extension}"


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="support_tickets",
        verbose_name=_("reported by"),
    )
    reporter_name = models.CharField(_("name"), max_length=200, blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = PhoneNumberField(_("phone number to call back"), blank=True)
    description = models.TextField(_("description"))
    page = models.CharField(_("page"), max_length=500, blank=True)
    source_community = models.ForeignKey(
        Community,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("community"),
    )
    community_name = models.CharField(_("community"), max_length=200, blank=True)
    user_agent = models.CharField(_("browser"), max_length=300, blank=True)
    screenshot = models.FileField(_("screenshot"), upload_to=_screenshot_path, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    created_at = models.DateTimeField(_("reported"), default=timezone.now)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # The e-mail to the support address: sent once, after commit (support.tasks).
    emailed_at = models.DateTimeField(_("e-mailed"), null=True, blank=True)
    email_error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("support ticket")
        verbose_name_plural = _("support tickets")
        ordering = ["-created_at"]

    def __str__(self):
        return f"#{self.pk} {self.description[:60]}"
