"""Django admin for platform staff: the notifications sent (or refused, failed), to answer
"why did I (not) get an e-mail?"."""

from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "community", "recipient", "kind", "channel", "state", "sent_at"]
    list_filter = ["state", "kind", "channel"]
    search_fields = ["key", "recipient__phone", "recipient__email"]
    readonly_fields = [f.name for f in Notification._meta.fields]
    list_select_related = ["community", "recipient"]

    def has_add_permission(self, request):
        return False
