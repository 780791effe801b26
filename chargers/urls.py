from django.urls import path

from . import commissioning_views, views

app_name = "chargers"

urlpatterns = [
    path("c/<slug:community>/outlets/", views.outlet_list, name="outlet-list"),
    path(
        "c/<slug:community>/outlets/<int:connector>/start/",
        views.outlet_start,
        name="outlet-start",
    ),
    path(
        "c/<slug:community>/sessions/<int:session>/stop/", views.session_stop, name="session-stop"
    ),
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
    path(
        "c/<slug:community>/chargers/<int:charger>/events/retry/",
        views.charger_events_retry,
        name="charger-events-retry",
    ),
    path(
        "c/<slug:community>/sites/<int:site>/chargers/claim/",
        commissioning_views.charger_claim,
        name="charger-claim",
    ),
    path(
        "c/<slug:community>/chargers/<int:charger>/commissioning/",
        commissioning_views.charger_commissioning,
        name="charger-commissioning",
    ),
    path(
        "c/<slug:community>/chargers/<int:charger>/password/",
        commissioning_views.charger_password,
        name="charger-password",
    ),
    path(
        "c/<slug:community>/chargers/<int:charger>/configuration/",
        commissioning_views.charger_configuration,
        name="charger-configuration",
    ),
    path(
        "c/<slug:community>/chargers/<int:charger>/reconfigure/",
        commissioning_views.charger_reconfigure,
        name="charger-reconfigure",
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
