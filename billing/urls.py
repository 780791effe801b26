from django.urls import path

from . import views

app_name = "billing"

# Relative to `c/<slug:community>/` (see `sparklin/urls.py`).
# Object ids travel as query/form parameters (`?note=`, `?job=`), looked up inside the
# community scope: an id of another community answers 404.
urlpatterns = [
    path("settings/prices/add/", views.price_add, name="price-add"),
    path("settings/prices/<int:price>/edit/", views.price_edit, name="price-edit"),
    path("settings/prices/<int:price>/delete/", views.price_delete, name="price-delete"),
    path("exports/", views.export_list, name="export-list"),
    path("exports/sessions.csv", views.export_sessions, name="export-sessions"),
    path("exports/notes/", views.notes_action, name="export-notes"),
    path("exports/notes/job/", views.export_job, name="export-job"),
    path("exports/notes/zip/", views.export_download, name="export-download"),
    path("exports/notes/resend/", views.note_resend, name="export-resend"),
    path("expense-notes/", views.my_note_list, name="note-list"),
    path("expense-notes/pdf/", views.note_download, name="note-download"),
]
