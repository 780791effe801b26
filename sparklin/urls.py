"""Root URLs. Every URL that shows tenant data starts with `c/<slug:community>/` (declared in the
apps' own urls.py): `communities.middleware` resolves and checks it before any view runs."""

from django.contrib import admin
from django.urls import include, path

from communities import views as community_views

urlpatterns = [
    path("", community_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("", include("communities.urls")),
    path("", include("chargers.urls")),
    path("", include("billing.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]
