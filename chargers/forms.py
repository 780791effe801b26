import re
from typing import cast

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from communities.models import Membership, Site

from .models import ChargeCard, Charger, Connector, OutletState, Vendor, normalize_card_uid


class ChargerForm(forms.Form):
    identity = forms.CharField(
        label=_("Serial number (charge point identity)"),
        max_length=48,
        help_text=_(
            "Letters, digits, '-', '_' and '.' only: it becomes part of the charger's URL."
        ),
    )
    vendor = forms.ChoiceField(label=_("Vendor"), choices=Vendor.choices)
    model = forms.CharField(label=_("Model"), max_length=50, required=False)
    name = forms.CharField(label=_("Name"), max_length=100, required=False)
    password = forms.CharField(
        label=_("Password (optional)"),
        required=False,
        min_length=8,
        max_length=40,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("HTTP Basic password the charger must send (OCPP security profiles 1 and 2)."),
    )

    def clean_identity(self):
        identity = self.cleaned_data["identity"].strip()
        if not re.fullmatch(r"[A-Za-z0-9._\-]+", identity):
            raise forms.ValidationError(_("Use letters, digits, '-', '_' and '.' only."))
        return identity


class ChargerEditForm(forms.Form):
    site: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Site"), queryset=Site.objects.none(), empty_label=None
    )
    vendor = forms.ChoiceField(label=_("Vendor"), choices=Vendor.choices)
    model = forms.CharField(label=_("Model"), max_length=50, required=False)
    name = forms.CharField(label=_("Name"), max_length=100, required=False)
    password = forms.CharField(
        label=_("New password"),
        required=False,
        min_length=8,
        max_length=40,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Leave blank to keep the current password."),
    )
    clear_password = forms.BooleanField(label=_("Remove the password"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["site"]).queryset = Site.objects.all()

    @classmethod
    def initial_for(cls, charger: Charger):
        return {
            "site": charger.site_id,
            "vendor": charger.vendor,
            "model": charger.model,
            "name": charger.name,
        }


class CardEditForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, required=False)
    expires_on = forms.DateField(
        label=_("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=_("Last day the card works. Leave blank for no expiry."),
    )

    @classmethod
    def initial_for(cls, card: ChargeCard) -> dict:
        return {"name": card.name, "expires_on": card.expires_on}


class CardForm(CardEditForm):
    uid = forms.CharField(
        label=_("Card UID"),
        max_length=64,
        help_text=_(
            "As printed on the card or read by the charger, e.g. 04A23B11 or 04:A2:3B:11 "
            "(case and separators do not matter)."
        ),
    )
    field_order = ["uid", "name", "expires_on"]

    def clean_uid(self) -> str:
        uid = normalize_card_uid(self.cleaned_data["uid"])
        if not uid:
            raise forms.ValidationError(_("Enter the card UID."))
        if len(uid) > 36:
            raise forms.ValidationError(_("A card UID has at most 36 characters."))
        return uid


class MonthField(forms.CharField):
    """A month written YYYY-MM (the value of <input type=month>), cleaned to (year, month)."""

    default_error_messages = {"invalid": _("Enter a month as YYYY-MM.")}

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        m = re.fullmatch(r"(\d{4})-(\d{2})", value.strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(m.group(1)), int(m.group(2))


# A person is chosen from a list up to this many members; above, through their page's link
# (`?user=<id>`), which the same field validates.
USER_CHOICES_MAX = 200


def _people_field(form: forms.Form, community) -> None:
    field = cast(forms.ModelChoiceField, form.fields["user"])
    # Current members only: the names of those who left are no longer shown.
    members = Membership.objects.current().filter(community=community)
    field.queryset = User.objects.filter(memberships__in=members).order_by(
        "last_name", "first_name"
    )
    # Counted up to the bound only: a fleet's thousands of members are not counted.
    if members.values("pk")[: USER_CHOICES_MAX + 1].count() > USER_CHOICES_MAX:
        field.widget = forms.HiddenInput()


class SessionFilterForm(forms.Form):
    month = MonthField(
        label=_("Month"), required=False, widget=forms.TextInput(attrs={"type": "month"})
    )
    user = forms.ModelChoiceField(
        label=_("User"), queryset=User.objects.none(), required=False, empty_label=_("All users")
    )
    site: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Site"), queryset=Site.objects.none(), required=False, empty_label=_("All sites")
    )

    def __init__(self, *args, community, **kwargs):
        super().__init__(*args, **kwargs)
        _people_field(self, community)
        cast(forms.ModelChoiceField, self.fields["site"]).queryset = Site.objects.all()


class OutletFilterForm(forms.Form):
    """The outlets page's filters (GET): a serial number or name fragment, a state, a site."""

    q = forms.CharField(label=_("Search"), max_length=48, required=False)
    state = forms.ChoiceField(label=_("State"), required=False)
    site: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Site"), queryset=Site.objects.none(), required=False, empty_label=_("All sites")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["state"]).choices = [
            ("", _("All states")),
            *OutletState.choices,
        ]
        cast(forms.ModelChoiceField, self.fields["site"]).queryset = Site.objects.order_by("name")

    def clean_q(self):
        return self.cleaned_data["q"].strip()

    def filters(self) -> dict:
        """Keyword arguments of `chargers.selectors.outlets` (none when the form is invalid)."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {"search": data["q"], "state": data["state"], "site": data["site"]}


class UsageFilterForm(forms.Form):
    """The dashboard charts' filter for managers (GET): one site, one person."""

    site: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Site"), queryset=Site.objects.none(), required=False, empty_label=_("All sites")
    )
    user = forms.ModelChoiceField(
        label=_("User"), queryset=User.objects.none(), required=False, empty_label=_("All users")
    )

    def __init__(self, *args, community, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["site"]).queryset = Site.objects.order_by("name")
        _people_field(self, community)


class RefusedLookupForm(forms.Form):
    identity = forms.CharField(label=_("Serial number"), max_length=100)

    def clean_identity(self):
        return self.cleaned_data["identity"].strip()


class ClaimForm(forms.Form):
    serial = forms.CharField(label=_("Serial number"), max_length=48)
    pin = forms.CharField(
        label=_("PIN"),
        max_length=20,
        help_text=_("Printed on the sticker next to the serial number."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )
    name = forms.CharField(label=_("Name"), max_length=100, required=False)

    def clean_serial(self):
        return self.cleaned_data["serial"].strip()


SETTING_CHOICES = [
    ("heartbeat_interval", _("Heartbeat interval (seconds)")),
    ("meter_sample_interval", _("Meter sample interval (seconds)")),
    ("measurands", _("Measurands during a session")),
    ("stop_measurands", _("Measurands at the end of a session")),
]
_NUMERIC_SETTINGS = {"heartbeat_interval", "meter_sample_interval"}


class ConfigurationForm(forms.Form):
    setting = forms.ChoiceField(label=_("Setting"), choices=SETTING_CHOICES)
    value = forms.CharField(
        label=_("Value"),
        max_length=500,
        help_text=_(
            "Seconds, or measurands separated by commas (Energy.Active.Import.Register,…)."
        ),
    )

    def clean(self):
        data = super().clean() or {}
        setting, value = data.get("setting"), (data.get("value") or "").strip()
        if setting in _NUMERIC_SETTINGS:
            if not value.isdigit() or not 0 < int(value) <= 86400:
                self.add_error("value", _("Enter a number of seconds between 1 and 86400."))
        elif setting and not re.fullmatch(r"[A-Za-z.]+(\s*,\s*[A-Za-z.]+)*", value):
            self.add_error("value", _("Enter measurand names separated by commas."))
        data["value"] = re.sub(r"\s*,\s*", ",", value)
        return data


# --- fleet operations (chargers.operations) ---------------------------------------------------
class ReportForm(forms.Form):
    """Ask the charger for a report: what, and for which outlet (blank: the whole charger)."""

    report = forms.ChoiceField(
        label=_("Report"),
        choices=[("status", _("Outlet status")), ("meter_values", _("Meter reading"))],
    )
    connector: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Outlet"),
        queryset=Connector.objects.none(),
        required=False,
        empty_label=_("Whole charger"),
    )

    def __init__(self, *args, charger: Charger, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["connector"]).queryset = charger.connectors.all()


class AvailabilityForm(forms.Form):
    available = forms.TypedChoiceField(
        label=_("Availability"),
        choices=[("1", _("Available")), ("0", _("Unavailable"))],
        coerce=lambda v: v == "1",
    )


class MoveForm(forms.Form):
    site: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("New site"), queryset=Site.objects.none(), empty_label=None
    )

    def __init__(self, *args, charger: Charger, **kwargs):
        super().__init__(*args, **kwargs)
        field = cast(forms.ModelChoiceField, self.fields["site"])
        field.queryset = Site.objects.exclude(pk=charger.site_id).order_by("name")


class LogFilterForm(forms.Form):
    """The OCPP log's filter: one action (its calls and their answers), checked on the server."""

    action = forms.CharField(label=_("Action"), max_length=60, required=False)
    # Keyset cursors (chargers.ocpp_log.page): an unreadable one shows the newest frames.
    before = forms.CharField(required=False, max_length=80)
    after = forms.CharField(required=False, max_length=80)

    def clean_action(self):
        action = self.cleaned_data["action"].strip()
        if action and not re.fullmatch(r"[A-Za-z0-9]+", action):
            raise forms.ValidationError(_("Enter an OCPP action name, e.g. StatusNotification."))
        return action
