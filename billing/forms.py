from django import forms
from django.utils.translation import gettext_lazy as _

from chargers.forms import MonthField


class PriceForm(forms.Form):
    valid_from = forms.DateField(
        label=_("Valid from"), widget=forms.DateInput(attrs={"type": "date"})
    )
    price_per_kwh = forms.DecimalField(
        label=_("Price per kWh"),
        min_value=0,
        max_digits=10,
        decimal_places=4,
        widget=forms.NumberInput(attrs={"step": "0.0001"}),
    )


class ExportForm(forms.Form):
    month = MonthField(label=_("Month"), widget=forms.TextInput(attrs={"type": "month"}))


def ended_months(community, count: int = 12) -> list[tuple[str, str]]:
    """The last `count` months that are over in the community's time zone, newest first, as
    ("YYYY-MM", "October 2025") choices."""
    from django.utils import timezone
    from django.utils.formats import date_format

    from sparklin.dates import current_month

    from .services import previous_month

    year, month = current_month(community)
    choices = []
    for _i in range(count):
        year, month = previous_month(year, month)
        label = date_format(timezone.datetime(year, month, 1), "F Y")
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
        self.fields["months"].choices = ended_months(community)


class NoteResendForm(forms.Form):
    note = forms.IntegerField(min_value=1)
    kind = forms.ChoiceField(choices=[("finance", "finance"), ("driver", "driver")])


class IdForm(forms.Form):
    """`?note=<id>` / `?job=<id>` on downloads and progress polls."""

    id = forms.IntegerField(min_value=1)
