from django.urls import path, register_converter

from .views import login, signup


class _ExportFormat:
    regex = "json|csv"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(_ExportFormat, "export_format")

app_name = "accounts"

urlpatterns = [
    path("login/", login.login_phone, name="login"),
    path("login/code/", login.login_code, name="login-code"),
    path("login/resend/", login.login_resend, name="login-resend"),
    path("logout/", login.logout_view, name="logout"),
    path("language/", login.set_language, name="set-language"),
    path("me/", login.account, name="account"),
    path("me/export.<export_format:fmt>", login.account_export, name="account-export"),
    path("me/delete/", login.account_delete, name="account-delete"),
    path("me/profile/", signup.profile, name="profile"),
    path("signup/", signup.signup_start, name="signup"),
    path("signup/code/", signup.signup_code, name="signup-code"),
    path("signup/resend/", signup.signup_resend, name="signup-resend"),
    path("email/confirm/<str:token>/", signup.email_confirm, name="email-confirm"),
    path("email/resend/", signup.email_resend, name="email-resend"),
    path("invitation/<str:token>/", signup.invitation_start, name="invitation-start"),
    path("invitation/<str:token>/code/", signup.invitation_code, name="invitation-code"),
    path(
        "invitation/<str:token>/profile/",
        signup.invitation_profile,
        name="invitation-profile",
    ),
]
