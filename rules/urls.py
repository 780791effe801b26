"""Rules of use and user groups, relative to `c/<slug:community>/` (see `sparklin/urls.py`)."""

from django.urls import path

from . import views

app_name = "rules"

urlpatterns = [
    path("rules/", views.rules_page, name="rules-page"),
    path("rules/sites/<int:site>/", views.site_policy, name="rules-site"),
    path("rules/sites/<int:site>/offline/", views.offline_policy, name="offline-policy"),
    path("rules/outlets/<int:connector>/", views.outlet_policy, name="rules-outlet"),
    path("rules/<int:policy>/remove/", views.policy_remove, name="policy-remove"),
    path("rules/<int:policy>/windows/add/", views.window_add, name="window-add"),
    path("rules/windows/<int:time_window>/remove/", views.window_remove, name="window-remove"),
    path("rules/limits/", views.limit_set, name="limit-set"),
    path("cards/learn/", views.learn_start, name="learn-start"),
    path("cards/learn/<int:window>/", views.learn_detail, name="learn-detail"),
    path("cards/learn/<int:window>/confirm/", views.learn_confirm, name="learn-confirm"),
    path("cards/learn/<int:window>/cancel/", views.learn_cancel, name="learn-cancel"),
    path("users/groups/", views.group_list, name="group-list"),
    path("users/groups/<int:group>/", views.group_edit, name="group-edit"),
    path("users/groups/<int:group>/delete/", views.group_delete, name="group-delete"),
]
