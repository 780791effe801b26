from django.urls import path, register_converter

from . import views


class _ExportFormat:
    regex = "json|csv"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(_ExportFormat, "export_format")

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_phone, name="login"),
    path("login/code/", views.login_code, name="login-code"),
    path("login/resend/", views.login_resend, name="login-resend"),
    path("logout/", views.logout_view, name="logout"),
    path("language/", views.set_language, name="set-language"),
    path("me/", views.account, name="account"),
    path("me/export.<export_format:fmt>", views.account_export, name="account-export"),
    path("me/delete/", views.account_delete, name="account-delete"),
]
