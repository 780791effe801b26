"""Django admin for platform staff: installer companies (created here with their first member,
who adds the others in the portal) and installer access grants."""

from django.contrib import admin

from .models import AccessGrant, InstallerCompany, InstallerMember


class InstallerMemberInline(admin.TabularInline):
    model = InstallerMember
    raw_id_fields = ["user"]
    extra = 1


@admin.register(InstallerCompany)
class InstallerCompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [InstallerMemberInline]


@admin.register(AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    list_display = ["company", "community", "scope", "valid_from", "valid_until", "revoked_at"]
    list_filter = ["scope"]
    raw_id_fields = ["community", "company", "granted_by", "revoked_by"]
