"""Root URLs. Every URL that shows tenant data sits under the one `c/<slug:community>/` include
below: `communities.middleware` resolves and checks it before any view runs. The installer area,
invitation links, access requests and creating a community span communities and live outside it."""

from django.contrib import admin
from django.urls import include, path

from communities.views import community, installers, lifecycle
from notifications import views as notification_views

tenant_urlpatterns = [
    path("", include("communities.urls")),
    path("", include("chargers.urls")),
    path("", include("forwarding.urls")),
    path("", include("rules.urls")),
    path("", include("notifications.urls")),
    path("", include("billing.urls")),
    path("", include("meters.urls")),
    path("", include("power.urls")),
]

urlpatterns = [
    path("", community.home, name="home"),
    path(
        "accounts/me/notifications/",
        notification_views.preferences_save,
        name="notification-preferences",
    ),
    path("accounts/", include("accounts.urls")),
    path("communities/new/", community.community_create, name="community-create"),
    path("installer/", installers.installer_home, name="installer-home"),
    path(
        "installer/installations/new/",
        installers.installation_create,
        name="installation-create",
    ),
    path("installer/members/add/", installers.company_member_add, name="company-member-add"),
    path("invitations/<str:token>/", lifecycle.invitation_accept, name="invitation-accept"),
    path("access/request/", lifecycle.access_request_create, name="access-request-create"),
    path("c/<slug:community>/", include(tenant_urlpatterns)),
    path("support/", include("support.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]
