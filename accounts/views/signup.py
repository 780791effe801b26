"""Pages of the front door: sign-up (before any installation), the invitation journey of a
person without an account, profile confirmation, e-mail confirmation. Each step keeps what it
needs in the session; a step reached out of order goes back to its start."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .. import codes, signup
from ..forms import CodeForm, InvitationPhoneForm, ProfileForm, SignupForm
from ..models import LoginCode, User
from ..services import LoginError
from .login import _client_ip, _safe_next, _set_language_cookie

# A proven number may finish its profile within this time (seconds) after the code.
PROOF_TTL = 30 * 60


def _language() -> str:
    language = (get_language() or settings.LANGUAGE_CODE)[:2]
    return language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _log_in(request, user: User, response):
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    _set_language_cookie(response, user.language)
    return response


def _masked(phone: str) -> str:
    return f"•• •• •• {phone[-4:-2]} {phone[-2:]}" if len(phone) > 4 else phone


# --- sign-up ---------------------------------------------------------------------------------


def signup_start(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(
        request.POST or None, initial={"country": settings.PHONENUMBER_DEFAULT_REGION}
    )
    if request.method == "POST" and form.is_valid():
        data = {k: str(v) for k, v in form.cleaned_data.items()}
        try:
            codes.issue_code(
                phone=data["phone"],
                purpose=LoginCode.Purpose.SIGNUP,
                ip=_client_ip(request),
                language=_language(),
            )
        except LoginError as e:
            form.add_error(None, e.message)
        else:
            request.session["signup"] = data
            return redirect("accounts:signup-code")
    return render(request, "accounts/signup.html", {"form": form})


def signup_code(request):
    data = request.session.get("signup")
    if not data:
        return redirect("accounts:signup")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes.verify_code(
                phone=data["phone"],
                purpose=LoginCode.Purpose.SIGNUP,
                code=form.cleaned_data["code"],
                ip=_client_ip(request),
            )
            user, created = signup.complete_signup(
                phone=data["phone"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                email=data["email"],
                country=data["country"],
                language=_language(),
            )
        except (LoginError, signup.SignupError) as e:
            form.add_error("code", e.message)
        else:
            request.session.pop("signup", None)
            if created:
                text = _("Your account is ready.")
                if user.email:
                    text += " " + _("We sent you a link to confirm your e-mail address.")
            else:
                text = _("You already had an account with this number: you are logged in.")
            response = _log_in(request, user, redirect("home"))
            messages.success(request, text)
            return response
    return render(
        request,
        "accounts/code_step.html",
        {
            "form": form,
            "phone": data["phone"],
            "title": _("Confirm your phone number"),
            "button": _("Create my account"),
            "resend_url": reverse("accounts:signup-resend"),
            "back_url": reverse("accounts:signup"),
            "ttl_minutes": settings.LOGIN_CODE_TTL_SECONDS // 60,
        },
    )


@require_POST
def signup_resend(request):
    data = request.session.get("signup")
    if not data:
        return redirect("accounts:signup")
    try:
        codes.issue_code(
            phone=data["phone"],
            purpose=LoginCode.Purpose.SIGNUP,
            ip=_client_ip(request),
            language=_language(),
        )
    except LoginError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("A new code is on its way."))
    return redirect("accounts:signup-code")


# --- invitation of a person without an account -----------------------------------------------


def _open_invitation(token):
    from communities import invitations

    invitation = invitations.find_invitation(token)
    return invitation, invitations.invitation_problem(invitation)


def _invalid(request, problem):
    return render(request, "communities/invitation_invalid.html", {"problem": problem}, status=404)


def invitation_start(request, token):
    """An invitation opened without being logged in: get a code on the invited number (or on
    the number typed, for an invitation sent by e-mail), or log in with another account."""
    invitation, problem = _open_invitation(token)
    if problem:
        return _invalid(request, problem)
    if request.user.is_authenticated:
        return redirect("invitation-accept", token=token)
    form = None if invitation.phone else InvitationPhoneForm(request.POST or None)
    if request.method == "POST" and (form is None or form.is_valid()):
        phone = invitation.phone if form is None else str(form.cleaned_data["phone"])
        try:
            codes.issue_code(
                phone=phone,
                purpose=LoginCode.Purpose.INVITATION,
                ip=_client_ip(request),
                language=_language(),
            )
        except LoginError as e:
            messages.error(request, e.message)
        else:
            request.session["invitation"] = {"token": token, "phone": phone}
            return redirect("accounts:invitation-code", token=token)
    login_url = f"{reverse('accounts:login')}?next={reverse('invitation-accept', args=[token])}"
    return render(
        request,
        "accounts/invitation_start.html",
        {
            "invitation": invitation,
            "form": form,
            "masked_phone": _masked(invitation.phone) if invitation.phone else "",
            "login_url": login_url,
        },
    )


def _invitation_state(request, token):
    state = request.session.get("invitation")
    return state if state and state.get("token") == token else None


def invitation_code(request, token):
    invitation, problem = _open_invitation(token)
    if problem:
        return _invalid(request, problem)
    state = _invitation_state(request, token)
    if state is None:
        return redirect("accounts:invitation-start", token=token)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes.verify_code(
                phone=state["phone"],
                purpose=LoginCode.Purpose.INVITATION,
                code=form.cleaned_data["code"],
                ip=_client_ip(request),
            )
        except LoginError as e:
            form.add_error("code", e.message)
        else:
            existing = User.objects.filter(
                phone=state["phone"], is_active=True, phone_confirmed_at__isnull=False
            ).first()
            if existing is not None:
                # The number has an account: its owner is logged in and accepts as usual.
                request.session.pop("invitation", None)
                return _log_in(request, existing, redirect("invitation-accept", token=token))
            state["proven_at"] = time.time()
            request.session["invitation"] = state
            return redirect("accounts:invitation-profile", token=token)
    return render(
        request,
        "accounts/code_step.html",
        {
            "form": form,
            "phone": _masked(state["phone"]),
            "title": _("Enter the code received"),
            "button": _("Continue"),
            "resend_url": reverse("accounts:invitation-start", args=[token]),
            "resend_needs_phone": not invitation.phone,
            "back_url": reverse("accounts:invitation-start", args=[token]),
            "ttl_minutes": settings.LOGIN_CODE_TTL_SECONDS // 60,
            "invitation": invitation,
        },
    )


def invitation_profile(request, token):
    """Last step for a new person: names, e-mail, country → account, logged in, invitation
    accepted, dashboard of the community."""
    from communities import invitations
    from communities.services import CommunityError

    invitation, problem = _open_invitation(token)
    if problem:
        return _invalid(request, problem)
    state = _invitation_state(request, token)
    if state is None or time.time() - state.get("proven_at", 0) > PROOF_TTL:
        return redirect("accounts:invitation-start", token=token)
    form = ProfileForm(request.POST or None, initial={"email": invitation.email, "country": "FR"})
    if request.method == "POST" and form.is_valid():
        try:
            user, _created = signup.complete_signup(
                phone=state["phone"], language=_language(), **form.cleaned_data
            )
            membership = invitations.accept_invitation(token=token, user=user)
        except (signup.SignupError, CommunityError) as e:
            form.add_error(None, e.message)
        else:
            request.session.pop("invitation", None)
            response = _log_in(
                request,
                user,
                redirect("communities:dashboard", community=membership.community.slug),
            )
            messages.success(
                request,
                _("Welcome! You are now the owner of %(name)s.") % {"name": membership.community},
            )
            return response
    return render(
        request, "accounts/invitation_profile.html", {"form": form, "invitation": invitation}
    )


# --- profile and e-mail ----------------------------------------------------------------------


@login_required
def profile(request):
    """Confirm or correct one's names, e-mail and country (first login after being added by
    a manager, or later from "My account")."""
    user = request.user
    initial = {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "country": user.country or "FR",
    }
    form = ProfileForm(request.POST or None, initial=initial)
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "POST" and form.is_valid():
        signup.update_profile(user=user, **form.cleaned_data)
        messages.success(request, _("Your details are saved."))
        return redirect(next_url)
    return render(request, "accounts/profile.html", {"form": form, "next": next_url})


def email_confirm(request, token):
    try:
        signup.confirm_email(token)
    except signup.SignupError as e:
        return render(request, "accounts/email_confirm.html", {"problem": e.message}, status=400)
    return render(request, "accounts/email_confirm.html", {})


@login_required
@require_POST
def email_resend(request):
    if request.user.email and request.user.email_confirmed_at is None:
        signup.queue_email_confirmation(request.user)
        messages.success(request, _("A new confirmation link is on its way to your e-mail."))
    return redirect("accounts:account")
