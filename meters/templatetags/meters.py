"""The site page's meter section reads its meters here (one include line in the page)."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.utils import timezone

from meters.config import describe
from meters.models import Meter, MeterReading
from meters.readings import silence_cutoff

register = template.Library()


@dataclass(frozen=True)
class MeterRow:
    meter: Meter
    silent: bool  # enabled, and no reading for METER_SILENT_SECONDS (or never)
    source: str  # where it is read from
    latest: MeterReading | None


@register.simple_tag
def site_meters(site) -> list[MeterRow]:
    """The site's meters with their state and newest reading."""
    cutoff = silence_cutoff(timezone.now())
    rows = []
    for meter in Meter.objects.filter(site=site).order_by("role", "name"):
        latest = None
        if meter.last_reading_at is not None:
            latest = MeterReading.objects.filter(meter=meter).order_by("-at").first()
        silent = meter.enabled and (meter.last_reading_at is None or meter.last_reading_at < cutoff)
        rows.append(MeterRow(meter, silent, describe(meter.kind, meter.config), latest))
    return rows
