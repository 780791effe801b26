"""Operators of a charger, relative to `c/<slug:community>/` (see `sparklin/urls.py`)."""

from django.urls import path

from . import views

app_name = "forwarding"

urlpatterns = [
    path("chargers/<int:charger>/operators/new/", views.operator_add, name="operator-add"),
    path(
        "chargers/<int:charger>/operators/<int:operator>/",
        views.operator_detail,
        name="operator-detail",
    ),
    path(
        "chargers/<int:charger>/operators/<int:operator>/edit/",
        views.operator_edit,
        name="operator-edit",
    ),
    path(
        "chargers/<int:charger>/operators/<int:operator>/test/",
        views.operator_test,
        name="operator-test",
    ),
    path(
        "chargers/<int:charger>/operators/<int:operator>/disconnect/",
        views.operator_disconnect,
        name="operator-disconnect",
    ),
]
