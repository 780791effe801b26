"""Community pages, relative to `c/<slug:community>/` (see `sparklin/urls.py`)."""

from django.urls import path

from .views import community, installers, lifecycle

app_name = "communities"

urlpatterns = [
    path("", community.dashboard, name="dashboard"),
    path("users/", community.member_list, name="member-list"),
    path("users/add/", community.member_add, name="member-add"),
    path("users/<int:member>/", community.member_detail, name="member-detail"),
    path("users/<int:member>/edit/", community.member_edit, name="member-edit"),
    path("users/<int:member>/remove/", community.member_remove, name="member-remove"),
    path("sites/", community.site_list, name="site-list"),
    path("sites/add/", community.site_add, name="site-add"),
    path("sites/<int:site>/", community.site_detail, name="site-detail"),
    path("sites/<int:site>/edit/", community.site_edit, name="site-edit"),
    path("settings/", community.settings_view, name="settings"),
    path("owner/invite/", installers.owner_invite, name="owner-invite"),
    path(
        "owner/invite/<int:invitation>/cancel/",
        installers.owner_invite_revoke,
        name="owner-invite-revoke",
    ),
    path("installer-access/", installers.installer_access, name="installer-access"),
    path(
        "installer-access/<int:grant>/revoke/",
        installers.installer_access_revoke,
        name="installer-access-revoke",
    ),
    path("leave/", lifecycle.leave, name="leave"),
    path("access-requests/", lifecycle.access_request_list, name="access-request-list"),
    path(
        "access-requests/<int:access_request>/decide/",
        lifecycle.access_request_decide,
        name="access-request-decide",
    ),
    path("audit/", lifecycle.audit_log, name="audit-log"),
]
