"""One way to confirm an irreversible action, used by all of them (account deletion, ownership
transfer, removing a member, revoking an installer's access, deleting a price, leaving an
installation…).

A view describes the action with a `Confirmation` (what happens, what cannot be undone, the
button's words, where "Cancel" goes, and how strongly to confirm), then calls `confirm()`:

    confirmation = Confirmation(title=…, consequences=[…], button=…, cancel_url=…, method=SMS)
    confirmed, form = confirm(request, confirmation)
    if confirmed:
        service_call(…)
        return redirect(…)
    return render_confirmation(request, confirmation, form)

Methods, from light to strong:
- `CHECK`: tick "I understand that this cannot be undone";
- `PHRASE`: type a given text (the member's name, the installation's name, one's phone number);
- `SMS`: a code sent by SMS to the person's own number (accounts.codes, purpose "confirm",
  bound to this action's `scope`: a code for one action never confirms another).

The page is the shared fragment `templates/_confirm.html`, included by `confirm.html` (a page of
its own) or by any page that shows the confirmation inline. Everything is checked on the server,
with translated messages (the fields carry no browser-only validation)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import phonenumbers
from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from accounts.models import User
    from sparklin.http import PortalRequest

CHECK, PHRASE, SMS = "check", "phrase", "sms"


@dataclass
class Confirmation:
    title: str
    button: str
    cancel_url: str
    consequences: list[str] = field(default_factory=list)
    question: str = ""
    method: str = CHECK
    # PHRASE: the text to type, and how to compare ("text": case/accents/spaces ignored,
    # "phone": any way of writing the same number).
    phrase: str = ""
    phrase_kind: str = "text"
    # SMS: names the action inside the code (see accounts.codes); defaults to the title.
    scope: str = ""
    action_url: str = ""

    def __post_init__(self) -> None:
        if self.method not in (CHECK, PHRASE, SMS):
            raise ValueError(f"Unknown confirmation method {self.method!r}")
        if self.method == PHRASE and not self.phrase:
            raise ValueError("A PHRASE confirmation needs the phrase to type")


def _normalise_text(value: str) -> str:
    value = unicodedata.normalize("NFKD", value)
    value = "".join(c for c in value if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", value).strip().casefold()


def _same_phone(typed: str, expected: str) -> bool:
    try:
        a = phonenumbers.parse(typed, settings.PHONENUMBER_DEFAULT_REGION)
        b = phonenumbers.parse(expected, settings.PHONENUMBER_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return False
    return a.country_code == b.country_code and a.national_number == b.national_number


class ConfirmForm(forms.Form):
    """The confirmation's one field, checked on the server. `code_sent` (SMS) tells the page
    whether a code went out, so it asks for the code rather than offering to send one."""

    def __init__(
        self,
        data: Any = None,
        *,
        confirmation: Confirmation,
        user: User | None = None,
        ip: str = "",
    ) -> None:
        super().__init__(data)
        self.confirmation, self.user, self.ip = confirmation, user, ip
        self.code_sent = False
        method = confirmation.method
        if method == CHECK:
            self.fields["understood"] = forms.BooleanField(
                label=gettext_lazy("I understand that this cannot be undone."),
                required=False,
            )
        elif method == PHRASE:
            self.fields["typed"] = forms.CharField(
                label=_("To confirm, type: %(phrase)s") % {"phrase": confirmation.phrase},
                required=False,
                widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
            )
        else:
            self.fields["code"] = forms.CharField(
                label=gettext_lazy("Code received by SMS"),
                required=False,
                widget=forms.TextInput(
                    attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}
                ),
            )

    def clean(self) -> dict[str, Any]:
        c, data = self.confirmation, self.cleaned_data
        if c.method == CHECK and not data.get("understood"):
            self.add_error("understood", _("Tick the box to confirm."))
        elif c.method == PHRASE:
            typed = data.get("typed") or ""
            ok = (
                _same_phone(typed, c.phrase)
                if c.phrase_kind == "phone"
                else _normalise_text(typed) == _normalise_text(c.phrase)
            )
            if not typed:
                self.add_error("typed", _("Type the text shown to confirm."))
            elif not ok:
                self.add_error("typed", _("This is not the text shown: nothing was done."))
        elif c.method == SMS:
            self._check_code(data.get("code") or "")
        return data

    def _check_code(self, code: str) -> None:
        from accounts import codes
        from accounts.services import LoginError

        if not re.fullmatch(r"\s*\d{6}\s*", code):
            self.add_error("code", _("Enter the 6-digit code received by SMS."))
            return
        if self.user is None:
            raise ValueError("An SMS confirmation needs the logged-in person (user=...)")
        try:
            codes.verify_code(
                phone=str(self.user.phone),
                purpose=codes.Purpose.CONFIRM,
                code=code,
                ip=self.ip,
                scope=self.confirmation.scope or self.confirmation.title,
            )
        except LoginError as e:
            self.add_error("code", e.message)


def _ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


def send_confirmation_code(request: PortalRequest, confirmation: Confirmation) -> bool:
    """SMS a confirmation code to the logged-in person; False (with a message) when refused."""
    from accounts import codes
    from accounts.services import LoginError

    user = request.user
    try:
        codes.issue_code(
            phone=str(user.phone),
            purpose=codes.Purpose.CONFIRM,
            ip=_ip(request),
            user=user,
            scope=confirmation.scope or confirmation.title,
            action=confirmation.title,
        )
    except LoginError as e:
        messages.error(request, e.message)
        return False
    messages.success(
        request,
        _("A code was sent by SMS to your number ending in %(end)s.")
        % {"end": str(user.phone)[-2:]},
    )
    return True


def confirm(request: PortalRequest, confirmation: Confirmation) -> tuple[bool, ConfirmForm]:
    """(True, form) when the POST confirms the action; otherwise the form to show (with its
    errors). With SMS, a POST carrying `send_code` sends the code and confirms nothing."""
    user, ip = request.user, _ip(request)
    if request.method != "POST":
        return False, ConfirmForm(confirmation=confirmation, user=user, ip=ip)
    if confirmation.method == SMS and "send_code" in request.POST:
        form = ConfirmForm(confirmation=confirmation, user=user, ip=ip)
        form.code_sent = send_confirmation_code(request, confirmation)
        return False, form
    form = ConfirmForm(request.POST, confirmation=confirmation, user=user, ip=ip)
    form.code_sent = bool(request.POST.get("code"))  # a code was typed: one was sent
    return form.is_valid(), form


def render_confirmation(
    request: HttpRequest, confirmation: Confirmation, form: ConfirmForm, **context: Any
) -> HttpResponse:
    status = 400 if form.is_bound and form.errors else 200
    return render(
        request,
        "confirm.html",
        {"confirmation": confirmation, "confirm_form": form, **context},
        status=status,
    )
