from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("c/<slug:community>/settings/prices/add/", views.price_add, name="price-add"),
    path("c/<slug:community>/exports/", views.export_list, name="export-list"),
    path("c/<slug:community>/exports/sessions.csv", views.export_sessions, name="export-sessions"),
]
