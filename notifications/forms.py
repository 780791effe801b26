from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import User

from .models import Kind
from .preferences import Choice
from .services import OFFLINE_MINUTES_MAX


class PreferencesForm(forms.Form):
    """Two checkboxes per kind shown to this person: `<kind>__email`, `<kind>__sms`."""

    def __init__(self, *args: Any, user: User, kinds: list[str], current: dict[str, Choice], **kw):
        super().__init__(*args, **kw)
        self.kinds = kinds
        for kind in kinds:
            for channel, label in (("email", _("E-mail")), ("sms", _("SMS"))):
                self.fields[f"{kind}__{channel}"] = forms.BooleanField(
                    label=label, required=False, initial=current[kind][channel]
                )

    def rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        return [
            (str(Kind(kind).label), self[f"{kind}__email"], self[f"{kind}__sms"])
            for kind in self.kinds
        ]

    def choices(self) -> dict[str, Choice]:
        data = self.cleaned_data
        return {k: {"email": data[f"{k}__email"], "sms": data[f"{k}__sms"]} for k in self.kinds}


class OfflineMinutesForm(forms.Form):
    offline_minutes = forms.IntegerField(
        label=_("Tell the managers when a charger is offline for more than (minutes)"),
        min_value=0,
        max_value=OFFLINE_MINUTES_MAX,
        help_text=_("0: never. A charger is announced once per outage, and again when it is back."),
        widget=forms.NumberInput(attrs={"inputmode": "numeric", "style": "max-width:8rem"}),
    )
