from datetime import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.formats import number_format
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from chargers.forms import MonthField

from .prices import PLAUSIBLE_MAX, PriceError, parse_price


class PriceField(forms.CharField):
    """A price per kWh typed as text (`inputmode="decimal"`): a number input drops the comma
    of `0,279` in some browsers and locales. Parsed on the server in the person's locale
    (billing.prices.parse_price), shown back in it."""

    widget = forms.TextInput(
        attrs={
            "inputmode": "decimal",
            "autocomplete": "off",
            "placeholder": "0,25",
            "size": 8,
            "maxlength": 20,
        }
    )

    def prepare_value(self, value):
        if isinstance(value, Decimal):
            return number_format(value.normalize() if value == value.to_integral() else value)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return parse_price(value, get_language() or "fr")
        except PriceError as e:
            raise forms.ValidationError(e.message, code="invalid")


class PriceForm(forms.Form):
    """Add or correct a price. Above billing.prices.PLAUSIBLE_MAX the manager must tick a
    confirmation (a lost comma turned 0,279 into 279 before)."""

    valid_from = forms.DateField(
        label=_("Valid from"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={
            "required": _("Enter the date from which the price applies."),
            "invalid": _("Enter a valid date."),
        },
    )
    price_per_kwh = PriceField(
        label=_("Price per kWh (€)"),
        error_messages={"required": _("Enter a price, e.g. 0,25.")},
    )
    confirm_high = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        price = data.get("price_per_kwh")
        self.needs_confirmation = False
        if price is not None and price > PLAUSIBLE_MAX and not data.get("confirm_high"):
            self.needs_confirmation = True
            self.fields["confirm_high"].widget = forms.CheckboxInput()
            self.fields["confirm_high"].label = _(
                "Yes, the price really is %(price)s € per kWh."
            ) % {"price": number_format(price)}
            self.add_error(
                "price_per_kwh",
                _(
                    "%(price)s € per kWh is unusually high (more than %(max)s €). Check the "
                    "decimal separator, then confirm below if it is right."
                )
                % {"price": number_format(price), "max": number_format(PLAUSIBLE_MAX)},
            )
        return data


class ExportForm(forms.Form):
    month = MonthField(label=_("Month"), widget=forms.TextInput(attrs={"type": "month"}))


def ended_months(community, count: int = 12) -> list[tuple[str, str]]:
    """The last `count` months that are over in the community's time zone, newest first, as
    ("YYYY-MM", "October 2025") choices."""
    from django.utils.formats import date_format

    from sparklin.dates import current_month

    from .months import previous_month

    year, month = current_month(community)
    choices = []
    for _i in range(count):
        year, month = previous_month(year, month)
        label = date_format(datetime(year, month, 1), "F Y")
        choices.append((f"{year:04d}-{month:02d}", label))
    return choices


class NotesMonthsForm(forms.Form):
    """Tools tab: months to export as a ZIP or to send to the recipient now."""

    ZIP = "zip"
    SEND = "send"

    months = forms.MultipleChoiceField(
        label=_("Months"), widget=forms.CheckboxSelectMultiple, choices=()
    )
    action = forms.ChoiceField(choices=[(ZIP, _("Download a ZIP")), (SEND, _("Send now"))])

    def __init__(self, *args, community, **kwargs):
        super().__init__(*args, **kwargs)
        months = self.fields["months"]
        assert isinstance(months, forms.MultipleChoiceField)  # declared above
        months.choices = ended_months(community)


class NoteResendForm(forms.Form):
    note = forms.IntegerField(min_value=1)
    kind = forms.ChoiceField(choices=[("finance", "finance"), ("driver", "driver")])


class IdForm(forms.Form):
    """`?note=<id>` / `?job=<id>` on downloads and progress polls."""

    id = forms.IntegerField(min_value=1)
