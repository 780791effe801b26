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
