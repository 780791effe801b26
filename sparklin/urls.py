"""Root URLs. Every URL that shows tenant data starts with `c/<slug:community>/` (declared in the
apps' own urls.py): `communities.middleware` resolves and checks it before any view runs. The
installer area, invitation links and access requests span communities and live outside it."""

from django.contrib import admin
from django.urls import include, path

from communities import installer_views, lifecycle_views
from communities import views as community_views

urlpatterns = [
    path("", community_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("installer/", installer_views.installer_home, name="installer-home"),
    path(
        "installer/installations/new/",
        installer_views.installation_create,
        name="installation-create",
    ),
    path("installer/members/add/", installer_views.company_member_add, name="company-member-add"),
    path("invitations/<str:token>/", lifecycle_views.invitation_accept, name="invitation-accept"),
    path("access/request/", lifecycle_views.access_request_create, name="access-request-create"),
    path("", include("communities.urls")),
    path("", include("chargers.urls")),
    path("", include("billing.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]
