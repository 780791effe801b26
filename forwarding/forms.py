from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import OperatorConnection, validate_ws_url
from .probe import refused_address


class OperatorForm(forms.Form):
    """ "Connect an operator" on the charger page; every rule is checked here (and the one
    Billing operator per charger again by the service)."""

    name = forms.CharField(label=_("Operator"), max_length=100)
    url = forms.CharField(
        label=_("Websocket URL"),
        max_length=500,
        validators=[validate_ws_url],
        help_text=_("ws:// or wss://, as the operator gave it; the identity is added after a /."),
        widget=forms.TextInput(
            attrs={"placeholder": "wss://ocpp.example.com/ocpp", "inputmode": "url"}
        ),
    )
    identity = forms.CharField(
        label=_("Identity presented to the operator"),
        max_length=48,
        help_text=_("The charger's serial number unless the operator says otherwise."),
    )
    password = forms.CharField(
        label=_("Password (optional)"),
        required=False,
        max_length=100,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Sent to the operator (HTTP Basic), stored encrypted."),
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=OperatorConnection.Role.choices,
        widget=forms.RadioSelect,
        help_text=_(
            "Billing: the operator authorizes cards and handles reimbursement (one per charger). "
            "Monitoring: it receives a copy of everything and may only read."
        ),
    )
    fallback = forms.ChoiceField(
        label=_("If a Billing operator does not answer in time"),
        choices=OperatorConnection.Fallback.choices,
        initial=OperatorConnection.Fallback.SPARKLIN,
    )

    def clean_identity(self) -> str:
        identity: str = self.cleaned_data["identity"].strip()
        if not identity or any(c.isspace() or c == "/" for c in identity):
            raise forms.ValidationError(_("No spaces or '/' in the identity."))
        return identity

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"].strip()
        host = urlsplit(url).hostname or ""
        literal = host == "localhost" or host.endswith(".localhost")
        try:
            ipaddress.ip_address(host)
            literal = True
        except ValueError:
            pass
        if literal:  # names are checked when resolved (the gateway, the test button)
            refusal = refused_address(host, ["127.0.0.1" if "localhost" in host else host])
            if refusal is not None:
                raise forms.ValidationError(refusal)
        return url

    def cleaned(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class OperatorEditForm(OperatorForm):
    """The operator's settings changed from its page: validated like "Connect an operator"
    (the same fields and checks, the loopback/private address guard included); an empty
    password keeps the stored one."""

    clear_password = forms.BooleanField(
        label=_("Remove the stored password"),
        required=False,
        help_text=_("The operator will then be reached without a password."),
    )

    def __init__(self, *args: Any, operator: OperatorConnection, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial", {f: getattr(operator, f) for f in ("name", "url", "identity", "role")}
        )
        kwargs["initial"].setdefault("fallback", operator.fallback)
        super().__init__(*args, **kwargs)
        password = self.fields["password"]
        password.label = _("New password (optional)")
        if operator.password_encrypted:
            password.help_text = _(
                "A password is stored (encrypted, never shown). Leave blank to keep it."
            )
        else:
            password.help_text = _("No password is stored. Leave blank to keep none.")
            del self.fields["clear_password"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("clear_password"):
            self.add_error(
                "clear_password",
                _("Type a new password or remove the stored one, not both."),
            )
        return data
