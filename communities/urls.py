from django.urls import path

from . import installer_views, lifecycle_views, views

app_name = "communities"

C = "c/<slug:community>/"

urlpatterns = [
    path("communities/new/", views.community_create, name="community-create"),
    path(C, views.dashboard, name="dashboard"),
    path(C + "users/", views.member_list, name="member-list"),
    path(C + "users/add/", views.member_add, name="member-add"),
    path(C + "users/<int:member>/", views.member_detail, name="member-detail"),
    path(C + "users/<int:member>/edit/", views.member_edit, name="member-edit"),
    path(C + "users/<int:member>/remove/", views.member_remove, name="member-remove"),
    path(C + "sites/", views.site_list, name="site-list"),
    path(C + "sites/add/", views.site_add, name="site-add"),
    path(C + "sites/<int:site>/", views.site_detail, name="site-detail"),
    path(C + "sites/<int:site>/edit/", views.site_edit, name="site-edit"),
    path(C + "settings/", views.settings_view, name="settings"),
    path(C + "owner/invite/", installer_views.owner_invite, name="owner-invite"),
    path(
        C + "owner/invite/<int:invitation>/cancel/",
        installer_views.owner_invite_revoke,
        name="owner-invite-revoke",
    ),
    path(C + "installer-access/", installer_views.installer_access, name="installer-access"),
    path(
        C + "installer-access/<int:grant>/revoke/",
        installer_views.installer_access_revoke,
        name="installer-access-revoke",
    ),
    path(C + "leave/", lifecycle_views.leave, name="leave"),
    path(C + "access-requests/", lifecycle_views.access_request_list, name="access-request-list"),
    path(
        C + "access-requests/<int:access_request>/decide/",
        lifecycle_views.access_request_decide,
        name="access-request-decide",
    ),
    path(C + "audit/", lifecycle_views.audit_log, name="audit-log"),
]
