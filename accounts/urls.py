from django.urls import path, register_converter

from . import signup_views, views


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
    path("me/profile/", signup_views.profile, name="profile"),
    path("signup/", signup_views.signup_start, name="signup"),
    path("signup/code/", signup_views.signup_code, name="signup-code"),
    path("signup/resend/", signup_views.signup_resend, name="signup-resend"),
    path("email/confirm/<str:token>/", signup_views.email_confirm, name="email-confirm"),
    path("email/resend/", signup_views.email_resend, name="email-resend"),
    path("invitation/<str:token>/", signup_views.invitation_start, name="invitation-start"),
    path("invitation/<str:token>/code/", signup_views.invitation_code, name="invitation-code"),
    path(
        "invitation/<str:token>/profile/",
        signup_views.invitation_profile,
        name="invitation-profile",
    ),
]
