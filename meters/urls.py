"""Site meters, relative to `c/<slug:community>/` (see `sparklin/urls.py`)."""

from django.urls import path

from . import views

app_name = "meters"

urlpatterns = [
    path("sites/<int:site>/meters/add/", views.meter_add, name="meter-add"),
    path("meters/<int:meter>/edit/", views.meter_edit, name="meter-edit"),
    path("meters/<int:meter>/delete/", views.meter_delete, name="meter-delete"),
]
