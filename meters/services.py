"""Every write to meters the portal can trigger: add, change, remove a site's meter. Managers
and installers with full access may (`sites:write`: meters are part of the site's electrical
installation); each change is audited."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chargers.models import Charger
from chargers.services import reconfigure
from communities.permissions import user_can
from communities.services import audit

from .config import OcppConfig, parse_config
from .models import Meter

if TYPE_CHECKING:
    from accounts.models import User
    from communities.models import Site


class MeterError(Exception):
    """A change refused by a rule; `message` is shown to the person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _check(
    *,
    site: Site,
    actor: User,
    name: str,
    kind: str,
    role: str,
    config: dict[str, Any],
    enabled: bool,
    meter: Meter | None = None,
) -> dict[str, Any]:
    if not user_can(site.community, actor, "sites:write"):
        raise MeterError(_("You may not change the meters of this site."))
    try:
        parsed = parse_config(kind, config)
    except ValidationError as e:
        raise MeterError(" ".join(e.messages)) from None
    others = Meter.objects.filter(site=site)
    if meter is not None:
        others = others.exclude(pk=meter.pk)
    if others.filter(name=name).exists():
        raise MeterError(_("This site already has a meter with this name."))
    if role == Meter.Role.GRID and enabled:
        grid = others.filter(role=Meter.Role.GRID, enabled=True).first()
        if grid is not None:
            raise MeterError(
                _("This site already has a grid meter (%(name)s): disable it first.")
                % {"name": grid.name}
            )
    if isinstance(parsed, OcppConfig):
        if not Charger.objects.filter(community=site.community, identity=parsed.charger).exists():
            raise MeterError(_("No charger with this serial number in this community."))
    return parsed.to_json()


def _main_meter_charger(kind: str, config: dict[str, Any], enabled: bool) -> str | None:
    """The charger whose connector 0 an OCPP meter reads (None for other kinds, or disabled)."""
    if kind != Meter.Kind.OCPP or not enabled:
        return None
    return str(config.get("charger") or "") or None


def _main_meter_changed(*, site: Site, actor: User, before: str | None, after: str | None) -> None:
    """An OCPP meter now reads another charger (or starts or stops reading one). The gateways'
    charger directory learns it from the chargers' `updated_at` (a charger reading a site's main
    meter is asked for connector-0 clock-aligned data at boot); the charger it now reads is
    reconfigured at once when connected, so its readings start without waiting for a reboot."""
    if before == after:
        return
    identities = [i for i in (before, after) if i]
    Charger.objects.filter(community=site.community, identity__in=identities).update(
        updated_at=timezone.now()
    )
    if after:
        charger = Charger.objects.filter(community=site.community, identity=after).first()
        if charger is not None and charger.connected:
            reconfigure(charger=charger, actor=actor)


@transaction.atomic
def create_meter(
    *,
    site: Site,
    actor: User,
    name: str,
    kind: str,
    role: str,
    config: dict[str, Any],
    enabled: bool = True,
) -> Meter:
    """Add a meter to `site`; run_meters (or the worker, for OCPP) starts reading it."""
    config = _check(
        site=site, actor=actor, name=name, kind=kind, role=role, config=config, enabled=enabled
    )
    meter = Meter.objects.create(
        community=site.community,
        site=site,
        name=name,
        kind=kind,
        role=role,
        config=config,
        enabled=enabled,
    )
    _main_meter_changed(
        site=site, actor=actor, before=None, after=_main_meter_charger(kind, config, enabled)
    )
    audit(
        community=site.community,
        actor=actor,
        action="meter.create",
        target=name,
        meter_id=meter.pk,
        site_id=site.pk,
    )
    return meter


@transaction.atomic
def update_meter(
    *,
    meter: Meter,
    actor: User,
    name: str,
    kind: str,
    role: str,
    config: dict[str, Any],
    enabled: bool,
) -> Meter:
    """Change a meter; run_meters picks the new configuration up within seconds."""
    config = _check(
        site=meter.site,
        actor=actor,
        name=name,
        kind=kind,
        role=role,
        config=config,
        enabled=enabled,
        meter=meter,
    )
    before = _main_meter_charger(meter.kind, meter.config, meter.enabled)
    meter.name, meter.kind, meter.role, meter.config, meter.enabled = (
        name,
        kind,
        role,
        config,
        enabled,
    )
    meter.last_error = ""
    meter.save()
    _main_meter_changed(
        site=meter.site,
        actor=actor,
        before=before,
        after=_main_meter_charger(kind, config, enabled),
    )
    audit(
        community=meter.community,
        actor=actor,
        action="meter.update",
        target=name,
        meter_id=meter.pk,
        site_id=meter.site_id,
    )
    return meter


@transaction.atomic
def delete_meter(*, meter: Meter, actor: User) -> None:
    """Remove a meter and its readings."""
    if not user_can(meter.community, actor, "sites:write"):
        raise MeterError(_("You may not change the meters of this site."))
    audit(
        community=meter.community,
        actor=actor,
        action="meter.delete",
        target=meter.name,
        site_id=meter.site_id,
    )
    before = _main_meter_charger(meter.kind, meter.config, meter.enabled)
    meter.delete()
    _main_meter_changed(site=meter.site, actor=actor, before=before, after=None)
