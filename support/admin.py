from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from . import services
from .models import Ticket


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "status",
        "reporter_name",
        "community_name",
        "summary",
        "emailed",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["description", "reporter_name", "email", "community_name", "page"]
    readonly_fields = [
        "reporter", "reporter_name", "email", "phone", "description", "page", "source_community",
        "community_name", "user_agent", "screenshot_link", "created_at", "closed_at",
        "emailed_at", "email_error",
    ]  # fmt: skip
    exclude = ["screenshot"]
    actions = ["close", "reopen"]

    @admin.display(description=_("description"))
    def summary(self, obj: Ticket) -> str:
        return obj.description[:80]

    @admin.display(description=_("e-mailed"), boolean=True)
    def emailed(self, obj: Ticket) -> bool:
        return obj.emailed_at is not None

    @admin.display(description=_("screenshot"))
    def screenshot_link(self, obj: Ticket) -> str:
        if not obj.screenshot:
            return "—"
        url = reverse("support:ticket-screenshot", kwargs={"ticket": obj.pk})
        return format_html(
            '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="" style="max-width:480px;max-height:320px;border:1px solid #ccc"></a>',
            url,
            url,
        )

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Close the selected tickets"))
    def close(self, request, queryset) -> None:
        for ticket in queryset:
            services.close_ticket(ticket=ticket)
        messages.success(request, _("Tickets closed."))

    @admin.action(description=_("Reopen the selected tickets"))
    def reopen(self, request, queryset) -> None:
        for ticket in queryset:
            services.reopen_ticket(ticket=ticket)
        messages.success(request, _("Tickets reopened."))
