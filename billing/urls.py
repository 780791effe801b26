from django.urls import path

from . import views

app_name = "billing"

# Object ids travel as query/form parameters (`?note=`, `?job=`), looked up inside the
# community scope: an id of another community answers 404.
urlpatterns = [
    path("c/<slug:community>/settings/prices/add/", views.price_add, name="price-add"),
    path(
        "c/<slug:community>/settings/prices/<int:price>/edit/",
        views.price_edit,
        name="price-edit",
    ),
    path(
        "c/<slug:community>/settings/prices/<int:price>/delete/",
        views.price_delete,
        name="price-delete",
    ),
    path("c/<slug:community>/exports/", views.export_list, name="export-list"),
    path("c/<slug:community>/exports/sessions.csv", views.export_sessions, name="export-sessions"),
    path("c/<slug:community>/exports/notes/", views.notes_action, name="export-notes"),
    path("c/<slug:community>/exports/notes/job/", views.export_job, name="export-job"),
    path("c/<slug:community>/exports/notes/zip/", views.export_download, name="export-download"),
    path("c/<slug:community>/exports/notes/resend/", views.note_resend, name="export-resend"),
    path("c/<slug:community>/expense-notes/", views.my_note_list, name="note-list"),
    path("c/<slug:community>/expense-notes/pdf/", views.note_download, name="note-download"),
]
