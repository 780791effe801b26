from django.urls import path

from . import views

app_name = "chargers"

urlpatterns = [
    path("c/<slug:community>/outlets/", views.outlet_list, name="outlet-list"),
    path(
        "c/<slug:community>/sites/<int:site>/chargers/add/", views.charger_add, name="charger-add"
    ),
    path(
        "c/<slug:community>/chargers/refused/",
        views.unknown_charger_list,
        name="unknown-charger-list",
    ),
    path("c/<slug:community>/chargers/<int:charger>/", views.charger_detail, name="charger-detail"),
    path(
        "c/<slug:community>/chargers/<int:charger>/edit/", views.charger_edit, name="charger-edit"
    ),
    path("c/<slug:community>/sessions/", views.session_list, name="session-list"),
    path("c/<slug:community>/my-sessions/", views.my_session_list, name="my-session-list"),
    path("c/<slug:community>/users/<int:member>/cards/add/", views.card_add, name="card-add"),
    path(
        "c/<slug:community>/cards/<int:card>/deactivate/",
        views.card_deactivate,
        name="card-deactivate",
    ),
]
