"""Input of the Power page, validated server-side (the same rules the services enforce are
repeated here as field errors, so a person sees where the problem is)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from communities.models import Site

from .models import IEC_MIN_A, ChargerPower, Circuit, Sharing, SitePower, Wiring
from .services import Window

DAYS = [
    (0, _("Mon")),
    (1, _("Tue")),
    (2, _("Wed")),
    (3, _("Thu")),
    (4, _("Fri")),
    (5, _("Sat")),
    (6, _("Sun")),
]
MAX_WINDOWS = 3


class SitePowerForm(forms.Form):
    phases = forms.TypedChoiceField(
        label=_("Phases"), choices=SitePower.Phases.choices, coerce=int, initial=3
    )
    voltage_v = forms.IntegerField(
        label=_("Nominal voltage (V)"), min_value=100, max_value=400, initial=230
    )
    limit_a = forms.DecimalField(
        label=_("Limit per phase (A)"),
        min_value=Decimal("1"),
        max_value=Decimal("10000"),
        decimal_places=1,
        help_text=_("The main fuse or the contracted current of the grid connection."),
    )
    margin_a = forms.DecimalField(
        label=_("Safety margin (A)"),
        min_value=Decimal("0"),
        decimal_places=1,
        initial=Decimal("2"),
        help_text=_("Kept free on every phase, for what the meter has not seen yet."),
    )
    load_balancing = forms.BooleanField(label=_("Dynamic load balancing"), required=False)
    sharing = forms.ChoiceField(label=_("Sharing"), choices=Sharing.choices, initial=Sharing.EQUAL)
    solar = forms.BooleanField(
        label=_("Solar balancing"),
        required=False,
        help_text=_("Charge from the measured surplus (needs a grid meter)."),
    )
    solar_minimum = forms.BooleanField(
        label=_("Minimum + solar"),
        required=False,
        help_text=_("Every session charges at its minimum from the grid, the surplus on top."),
    )
    peak_shaving = forms.BooleanField(label=_("Peak shaving"), required=False)
    peak_limit_kw = forms.DecimalField(
        label=_("Peak cap (kW)"),
        min_value=Decimal("0"),
        decimal_places=1,
        required=False,
        help_text=_("The grid import never exceeds this during the windows below."),
    )

    def clean(self) -> dict[str, Any]:
        data = cast(dict[str, Any], super().clean())
        limit, margin = data.get("limit_a"), data.get("margin_a")
        if limit is not None and margin is not None and margin >= limit:
            self.add_error("margin_a", _("The safety margin must be smaller than the limit."))
        if data.get("solar_minimum") and not data.get("solar"):
            self.add_error("solar_minimum", _("“Minimum + solar” is an option of solar balancing."))
        if data.get("peak_shaving") and data.get("peak_limit_kw") is None:
            self.add_error("peak_limit_kw", _("Peak shaving needs a cap in kW."))
        return data


class PeakWindowForm(forms.Form):
    days = forms.TypedMultipleChoiceField(
        label=_("Days"),
        choices=DAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    start = forms.TimeField(label=_("From"), required=False, widget=forms.TimeInput(format="%H:%M"))
    end = forms.TimeField(label=_("Until"), required=False, widget=forms.TimeInput(format="%H:%M"))

    def clean(self) -> dict[str, Any]:
        data = cast(dict[str, Any], super().clean())
        filled = [
            bool(data.get("days")),
            data.get("start") is not None,
            data.get("end") is not None,
        ]
        if any(filled) and not all(filled):
            raise forms.ValidationError(_("A window needs its days, a start and an end."))
        if all(filled) and data["start"] == data["end"]:
            raise forms.ValidationError(_("A window cannot start and end at the same time."))
        return data

    def window(self) -> Window | None:
        data = self.cleaned_data
        if not data.get("days"):
            return None
        return Window(days=tuple(data["days"]), start=data["start"], end=data["end"])


PeakWindowFormSet = forms.formset_factory(
    PeakWindowForm, extra=0, min_num=MAX_WINDOWS, max_num=MAX_WINDOWS, validate_max=True
)


def window_formset(power: SitePower | None, data: Any = None) -> Any:
    """The peak-shaving windows of a site: its windows, then blank rows up to MAX_WINDOWS."""
    initial = []
    if power is not None:
        initial = [{"days": w.days, "start": w.start, "end": w.end} for w in power.windows.all()][
            :MAX_WINDOWS
        ]
    return PeakWindowFormSet(data, initial=initial, prefix="windows")


def site_power_form(power: SitePower | None, data: Any = None) -> SitePowerForm:
    initial = {}
    if power is not None:
        initial = {
            name: getattr(power, name)
            for name in (
                "phases",
                "voltage_v",
                "limit_a",
                "margin_a",
                "load_balancing",
                "sharing",
                "solar",
                "solar_minimum",
                "peak_shaving",
                "peak_limit_kw",
            )
        }
    return SitePowerForm(data, initial=initial, prefix="site")


class CircuitForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    parent: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Fed by"),
        queryset=Circuit.objects.none(),
        required=False,
        empty_label=_("The site's grid connection"),
    )
    limit_a = forms.DecimalField(
        label=_("Limit per phase (A)"),
        min_value=Decimal("1"),
        max_value=Decimal("10000"),
        decimal_places=1,
    )

    def __init__(self, *args: Any, site: Site, circuit: Circuit | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        parents = Circuit.objects.filter(site=site)
        if circuit is not None:
            parents = parents.exclude(pk=circuit.pk)
        cast(forms.ModelChoiceField, self.fields["parent"]).queryset = parents


class ChargerPowerForm(forms.Form):
    circuit: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Circuit"),
        queryset=Circuit.objects.none(),
        required=False,
        empty_label=_("The site's grid connection"),
    )
    wiring = forms.ChoiceField(label=_("Wiring"), choices=Wiring.choices)
    min_a = forms.DecimalField(
        label=_("Minimum current (A)"),
        min_value=IEC_MIN_A,
        max_value=Decimal("500"),
        decimal_places=1,
        initial=IEC_MIN_A,
    )
    max_a = forms.DecimalField(
        label=_("Maximum current (A)"),
        min_value=IEC_MIN_A,
        max_value=Decimal("500"),
        decimal_places=1,
        initial=Decimal("32"),
    )

    def __init__(self, *args: Any, site: Site, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["circuit"]).queryset = Circuit.objects.filter(
            site=site
        )

    def clean(self) -> dict[str, Any]:
        data = cast(dict[str, Any], super().clean())
        low, high = data.get("min_a"), data.get("max_a")
        if low is not None and high is not None and high < low:
            self.add_error("max_a", _("The maximum current must be at least the minimum."))
        return data


def charger_power_form(
    site: Site, power: ChargerPower | None, data: Any = None, prefix: str | None = None
) -> ChargerPowerForm:
    initial: dict[str, Any] = {}
    if power is not None:
        initial = {
            "circuit": power.circuit_id,
            "wiring": power.wiring,
            "min_a": power.min_a,
            "max_a": power.max_a,
        }
    return ChargerPowerForm(data, initial=initial, site=site, prefix=prefix)


class ChargerSearchForm(forms.Form):
    """The Power page's search among the site's chargers (GET): a serial number or name
    fragment, like the outlets page's."""

    # Kept as typed while the live region around it is replaced by a poll (htmx hx-preserve).
    q = forms.CharField(
        label=_("Search"),
        max_length=48,
        required=False,
        widget=forms.TextInput(attrs={"id": "power-search", "hx-preserve": "true"}),
    )

    def search(self) -> str:
        return self.cleaned_data["q"].strip() if self.is_valid() else ""
