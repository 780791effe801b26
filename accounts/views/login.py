"""Login by SMS code, logout, language choice. Pages work without JavaScript."""

import json
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from sparklin.confirm import SMS, Confirmation, confirm, render_confirmation

from .. import privacy, services
from ..forms import CodeForm, LanguageForm, PhoneForm


def _client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is forgeable unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR", "")


def _safe_next(request, candidate) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _set_language_cookie(response, language):
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        samesite="Lax",
    )


def _added_by_a_manager(phone: str) -> bool:
    """True before the first login of a person added with "add a user" (still invited)."""
    from communities.models import Membership

    return (
        Membership.objects.with_scopes_disabled()
        .filter(user__phone=phone, user__phone_confirmed_at__isnull=True)
        .filter(state=Membership.State.INVITED)
        .exists()
    )


def login_phone(request):
    form = PhoneForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        phone = str(form.cleaned_data["phone"])
        try:
            services.request_login_code(phone=phone, ip=_client_ip(request))
        except services.LoginError as e:
            messages.error(request, e.message)
        request.session["login_phone"] = phone
        request.session["login_next"] = request.GET.get("next", "")
        return redirect("accounts:login-code")
    return render(
        request, "accounts/login.html", {"form": form, "next": request.GET.get("next", "")}
    )


def login_code(request):
    phone = request.session.get("login_phone")
    if not phone:
        return redirect("accounts:login")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        added = _added_by_a_manager(phone)
        try:
            user = services.verify_login_code(
                phone=phone, code=form.cleaned_data["code"], ip=_client_ip(request)
            )
        except services.LoginError as e:
            form.add_error("code", e.message)
        else:
            next_url = _safe_next(request, request.session.pop("login_next", ""))
            request.session.pop("login_phone", None)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if added:
                # First login of someone a manager added: they confirm their own details.
                next_url = f"{reverse('accounts:profile')}?{urlencode({'next': next_url})}"
            response = redirect(next_url)
            _set_language_cookie(response, user.language)
            return response
    ttl_minutes = settings.LOGIN_CODE_TTL_SECONDS // 60
    return render(
        request,
        "accounts/login_code.html",
        {"form": form, "phone": phone, "ttl_minutes": ttl_minutes},
    )


@require_POST
def login_resend(request):
    phone = request.session.get("login_phone")
    if not phone:
        return redirect("accounts:login")
    try:
        services.request_login_code(phone=phone, ip=_client_ip(request))
    except services.LoginError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("If this number has an account, a new code is on its way."))
    return redirect("accounts:login-code")


@require_POST
def logout_view(request):
    logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


@require_POST
def set_language(request):
    """Django's set_language, remembering the choice on the user for the next logins."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        return redirect("home")
    language = form.cleaned_data["language"]
    if request.user.is_authenticated:
        services.set_user_language(user=request.user, language=language)
    response = redirect(
        _safe_next(request, form.cleaned_data["next"] or request.headers.get("referer"))
    )
    _set_language_cookie(response, language)
    return response


@login_required
def account(request):
    """My account: my data (download) and account deletion."""
    return render(
        request,
        "accounts/account.html",
        {"sole_owner_of": privacy.sole_owner_communities(request.user)},
    )


@login_required
def account_export(request, fmt):
    if fmt == "json":
        body = json.dumps(privacy.export_user_data(request.user), indent=2, ensure_ascii=False)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
    else:
        body = privacy.export_user_data_csv(request.user)
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="sparklin-my-data.{fmt}"'
    return response


def deletion_confirmation() -> Confirmation:
    return Confirmation(
        title=_("Delete my account"),
        consequences=[
            _("Your name, phone number, e-mail and cards are erased everywhere."),
            _("You leave every installation; your cards stop working."),
            _("Your charging sessions stay in the installations' accounts, without your name."),
            _("This cannot be undone."),
        ],
        button=_("Delete my account for good"),
        cancel_url=reverse("accounts:account"),
        method=SMS,
        scope="account.delete",
    )


@login_required
def account_delete(request):
    """Account deletion, confirmed by a code sent by SMS to the person's number."""
    owned = privacy.sole_owner_communities(request.user)
    if owned:
        return redirect("accounts:account")
    confirmation = deletion_confirmation()
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        privacy.delete_account(user=request.user)
    except privacy.AccountError as e:
        messages.error(request, e.message)
        return redirect("accounts:account")
    logout(request)
    messages.success(request, _("Your account and your personal data were deleted."))
    return redirect("accounts:login")
