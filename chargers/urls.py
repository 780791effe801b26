"""Outlets, chargers, sessions and cards, relative to `c/<slug:community>/` (see
`sparklin/urls.py`)."""

from django.urls import path

from .views import cards, commissioning, fleet, operations, sessions

app_name = "chargers"

urlpatterns = [
    path("outlets/", fleet.outlet_list, name="outlet-list"),
    path("outlets/<int:connector>/start/", fleet.outlet_start, name="outlet-start"),
    path("sessions/<int:session>/stop/", fleet.session_stop, name="session-stop"),
    path("sites/<int:site>/chargers/add/", fleet.charger_add, name="charger-add"),
    path("chargers/refused/", fleet.unknown_charger_list, name="unknown-charger-list"),
    path("chargers/<int:charger>/", fleet.charger_detail, name="charger-detail"),
    path("chargers/<int:charger>/edit/", fleet.charger_edit, name="charger-edit"),
    path(
        "chargers/<int:charger>/events/retry/",
        fleet.charger_events_retry,
        name="charger-events-retry",
    ),
    path("chargers/<int:charger>/reset/", operations.charger_reset, name="charger-reset"),
    path(
        "chargers/<int:charger>/reset/hard/",
        operations.charger_reset_hard,
        name="charger-reset-hard",
    ),
    path("chargers/<int:charger>/report/", operations.charger_report, name="charger-report"),
    path(
        "chargers/<int:charger>/outlets/<int:connector>/unlock/",
        operations.outlet_unlock,
        name="outlet-unlock",
    ),
    path(
        "chargers/<int:charger>/outlets/<int:connector>/availability/",
        operations.outlet_availability,
        name="outlet-availability",
    ),
    path(
        "chargers/<int:charger>/log/download/",
        operations.charger_log_download,
        name="charger-log-download",
    ),
    path("chargers/<int:charger>/move/", operations.charger_move, name="charger-move"),
    path("chargers/<int:charger>/delete/", operations.charger_delete, name="charger-delete"),
    path("sites/<int:site>/chargers/claim/", commissioning.charger_claim, name="charger-claim"),
    path(
        "chargers/<int:charger>/commissioning/",
        commissioning.charger_commissioning,
        name="charger-commissioning",
    ),
    path(
        "chargers/<int:charger>/password/",
        commissioning.charger_password,
        name="charger-password",
    ),
    path(
        "chargers/<int:charger>/configuration/",
        commissioning.charger_configuration,
        name="charger-configuration",
    ),
    path(
        "chargers/<int:charger>/reconfigure/",
        commissioning.charger_reconfigure,
        name="charger-reconfigure",
    ),
    path("sessions/", fleet.session_list, name="session-list"),
    path("sessions/<int:session>/", sessions.session_detail, name="session-detail"),
    path("my-sessions/", fleet.my_session_list, name="my-session-list"),
    path("users/<int:member>/cards/add/", cards.card_add, name="card-add"),
    path("cards/<int:card>/edit/", cards.card_edit, name="card-edit"),
    path("cards/<int:card>/deactivate/", cards.card_deactivate, name="card-deactivate"),
    path("cards/<int:card>/reactivate/", cards.card_reactivate, name="card-reactivate"),
]
