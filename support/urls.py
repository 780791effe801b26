from django.urls import path

from . import views

app_name = "support"

urlpatterns = [
    path("", views.report, name="report"),
    path("tickets/<int:ticket>/screenshot/", views.screenshot, name="ticket-screenshot"),
]
