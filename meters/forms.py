"""The meter form: common fields, then the fields of each kind; `clean` builds the JSON
configuration and checks it with the one set of rules (`meters.config`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from chargers.models import Charger

from .config import OCPP_LOCATIONS, parse_config, register_maps
from .models import Meter

PORTAL_KINDS = [
    (Meter.Kind.MQTT.value, Meter.Kind.MQTT.label),
    (Meter.Kind.MODBUS.value, Meter.Kind.MODBUS.label),
    (Meter.Kind.OCPP.value, Meter.Kind.OCPP.label),
]
# Which fields belong to which kind (the template groups them; `clean` reads only those).
KIND_FIELDS = {
    "mqtt": ["broker", "topic", "path_l1", "path_l2", "path_l3", "path_total", "scale"],
    "modbus": ["host", "port", "unit", "model", "interval"],
    "ocpp": ["charger", "location"],
    "simulated": [],
}
PATHS = {
    "path_l1": "power_w_l1",
    "path_l2": "power_w_l2",
    "path_l3": "power_w_l3",
    "path_total": "power_w_total",
}


def _path_field(label):
    return forms.CharField(label=label, required=False, max_length=200)


class MeterForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    role = forms.ChoiceField(label=_("Measures"), choices=Meter.Role.choices)
    kind = forms.ChoiceField(label=_("Read over"), choices=PORTAL_KINDS)
    enabled = forms.BooleanField(label=_("Enabled"), required=False, initial=True)
    invert = forms.BooleanField(
        label=_("Reverse the sign (the meter counts export as positive)"), required=False
    )
    # MQTT
    broker = forms.CharField(
        label=_("Broker"),
        required=False,
        max_length=300,
        help_text=_("mqtt://user:password@host:1883 — empty for the platform's broker."),
    )
    topic = forms.CharField(label=_("Topic"), required=False, max_length=200)
    path_l1 = _path_field(_("JSON path of the power of L1"))
    path_l2 = _path_field(_("JSON path of the power of L2"))
    path_l3 = _path_field(_("JSON path of the power of L3"))
    path_total = _path_field(_("JSON path of the total power"))
    scale = forms.FloatField(label=_("Scale"), required=False, help_text=_("1 for W, 1000 for kW."))
    # Modbus TCP
    host = forms.CharField(label=_("Host or IP address"), required=False, max_length=253)
    port = forms.IntegerField(label=_("Port"), required=False, help_text=_("502 when empty."))
    unit = forms.IntegerField(label=_("Unit id"), required=False, help_text=_("1 when empty."))
    model = forms.ChoiceField(label=_("Model"), required=False)
    interval = forms.IntegerField(
        label=_("Seconds between readings"), required=False, help_text=_("5 when empty.")
    )
    # OCPP
    charger = forms.ChoiceField(label=_("Charger or OCPP meter"), required=False)
    location = forms.ChoiceField(
        label=_("Measuring location"),
        required=False,
        choices=list(
            zip(
                OCPP_LOCATIONS,
                [_("Any"), _("Inlet (supply side)"), _("Outlet (charger side)")],
                strict=True,
            )
        ),
    )

    def __init__(self, *args: Any, site, meter: Meter | None = None, **kwargs: Any):
        if meter is not None and "initial" not in kwargs:
            kwargs["initial"] = initial_of(meter)
        super().__init__(*args, **kwargs)
        self.site = site
        self.meter = meter
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [("", "—")] + [
            (key, regmap.name) for key, regmap in register_maps().items()
        ]
        chargers = Charger.objects.filter(community=site.community).order_by("identity")
        charger_field = self.fields["charger"]
        assert isinstance(charger_field, forms.ChoiceField)
        charger_field.choices = [("", "—")] + [
            (c.identity, f"{c} ({c.identity})" if c.name else c.identity) for c in chargers
        ]
        kind_field = self.fields["kind"]
        assert isinstance(kind_field, forms.ChoiceField)
        if meter is not None and meter.kind == Meter.Kind.SIMULATED:
            kind_field.choices = [*PORTAL_KINDS, (meter.kind, meter.get_kind_display())]

    def common_fields(self):
        return [self[name] for name in ("name", "role", "kind", "enabled", "invert")]

    def kind_sections(self):
        """(kind, label, bound fields) for the template's fieldsets."""
        labels = dict(Meter.Kind.choices)
        return [
            (kind, labels[kind], [self[name] for name in names])
            for kind, names in KIND_FIELDS.items()
            if names
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if not kind:
            return data
        invert = bool(data.get("invert"))
        if kind == "mqtt":
            raw: dict[str, Any] = {
                "broker": data.get("broker") or "",
                "topic": data.get("topic") or "",
                "paths": {PATHS[k]: data[k] for k in PATHS if data.get(k)},
                "scale": data.get("scale") if data.get("scale") is not None else 1.0,
                "invert": invert,
            }
        elif kind == "modbus":
            raw = {k: data.get(k) for k in ("host", "port", "unit", "model", "interval")} | {
                "invert": invert
            }
        elif kind == "ocpp":
            raw = {
                "charger": data.get("charger"),
                "location": data.get("location") or "",
                "invert": invert,
            }
        else:
            raw = dict(self.meter.config) if self.meter else {}
        try:
            data["config"] = parse_config(kind, raw).to_json()
        except ValidationError as e:
            self.add_error(None, e)
        return data


def initial_of(meter: Meter) -> dict[str, Any]:
    config = meter.config or {}
    initial: dict[str, Any] = {
        "name": meter.name,
        "role": meter.role,
        "kind": meter.kind,
        "enabled": meter.enabled,
        "invert": config.get("invert", False),
    }
    if meter.kind == "mqtt":
        paths = config.get("paths") or {}
        initial |= {k: paths.get(v, "") for k, v in PATHS.items()}
        initial |= {k: config.get(k) for k in ("broker", "topic", "scale")}
    elif meter.kind == "modbus":
        initial |= {k: config.get(k) for k in ("host", "port", "unit", "model", "interval")}
    elif meter.kind == "ocpp":
        initial |= {k: config.get(k) for k in ("charger", "location")}
    return initial
