from django.urls import path

from . import views

app_name = "communities"

urlpatterns = [
    path("communities/new/", views.community_create, name="community-create"),
    path("c/<slug:community>/", views.dashboard, name="dashboard"),
    path("c/<slug:community>/users/", views.member_list, name="member-list"),
    path("c/<slug:community>/users/add/", views.member_add, name="member-add"),
    path("c/<slug:community>/users/<int:member>/", views.member_detail, name="member-detail"),
    path("c/<slug:community>/users/<int:member>/edit/", views.member_edit, name="member-edit"),
    path(
        "c/<slug:community>/users/<int:member>/remove/", views.member_remove, name="member-remove"
    ),
    path("c/<slug:community>/sites/", views.site_list, name="site-list"),
    path("c/<slug:community>/sites/add/", views.site_add, name="site-add"),
    path("c/<slug:community>/sites/<int:site>/", views.site_detail, name="site-detail"),
    path("c/<slug:community>/sites/<int:site>/edit/", views.site_edit, name="site-edit"),
    path("c/<slug:community>/settings/", views.settings_view, name="settings"),
]
