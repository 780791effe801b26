"""Power pages, relative to `c/<slug:community>/` (see `sparklin/urls.py`)."""

from django.urls import path

from . import views

app_name = "power"

urlpatterns = [
    path("sites/<int:site>/power/", views.site_power, name="site-power"),
    path("sites/<int:site>/power/settings/", views.site_power_edit, name="site-power-edit"),
    path("sites/<int:site>/power/circuits/add/", views.circuit_add, name="circuit-add"),
    path(
        "sites/<int:site>/power/circuits/<int:circuit>/delete/",
        views.circuit_delete,
        name="circuit-delete",
    ),
    path(
        "sites/<int:site>/power/chargers/<int:charger>/",
        views.charger_power_edit,
        name="charger-power-edit",
    ),
]
