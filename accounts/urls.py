from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_phone, name="login"),
    path("login/code/", views.login_code, name="login-code"),
    path("login/resend/", views.login_resend, name="login-resend"),
    path("logout/", views.logout_view, name="logout"),
    path("language/", views.set_language, name="set-language"),
]
