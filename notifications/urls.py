"""Notification settings of an installation, relative to `c/<slug:community>/` (see
`sparklin/urls.py`); a person's choices are at `accounts/me/notifications/` (root URLs)."""

from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("notifications/settings/", views.community_settings, name="community-settings"),
]
