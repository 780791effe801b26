"""Every write on a site's electrical model: the grid connection and modes, circuits, how each
charger is wired. Keyword-only verbs, one transaction, an audit entry, a PowerError with a
translated message. Who may: `power:write` (managers and installers with access, full or
limited: the electrical installation is the installer's trade)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chargers.models import Charger, ChargerCommand, OcppVersion
from communities.models import Site
from communities.permissions import user_can
from communities.services import audit

from . import charging_profiles
from .models import ChargerPower, Circuit, PeakWindow, Sharing, SitePower, Wiring

if TYPE_CHECKING:
    from accounts.models import User


class PowerError(Exception):
    """A change refused by a rule of the electrical model; `message` is shown to the person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Window:
    """A weekly peak-shaving window: days (0 = Monday), from, until (local time)."""

    days: tuple[int, ...]
    start: time
    end: time


def _allowed(site: Site, actor: User | None) -> None:
    if not user_can(site.community, actor, "power:write"):
        raise PowerError(_("You are not allowed to change the power settings of this site."))


@transaction.atomic
def configure_site(
    *,
    site: Site,
    actor: User | None,
    phases: int,
    voltage_v: int,
    limit_a: Decimal,
    margin_a: Decimal,
    load_balancing: bool,
    solar: bool = False,
    solar_minimum: bool = False,
    peak_shaving: bool = False,
    peak_limit_kw: Decimal | None = None,
    sharing: str = Sharing.EQUAL,
    windows: list[Window] | None = None,
) -> SitePower:
    """Set a site's grid connection (phases, nominal voltage, limit per phase, safety margin)
    and its modes. Peak shaving needs a cap and at least one window; "minimum + solar" needs
    solar balancing; the margin must leave something to share. Switching every mode off asks
    the site's chargers to clear the profiles power management stored in them."""
    _allowed(site, actor)
    windows = windows or []
    if phases not in (1, 3):
        raise PowerError(_("A grid connection has one or three phases."))
    if margin_a >= limit_a:
        raise PowerError(_("The safety margin must be smaller than the limit."))
    if solar_minimum and not solar:
        raise PowerError(_("“Minimum + solar” is an option of solar balancing."))
    if peak_shaving and (peak_limit_kw is None or not windows):
        raise PowerError(_("Peak shaving needs a cap in kW and at least one time window."))
    if sharing not in Sharing.values:
        raise PowerError(_("Unknown sharing policy."))
    for window in windows:
        if not window.days or any(d not in range(7) for d in window.days):
            raise PowerError(_("Each time window needs at least one day."))
        if window.start == window.end:
            raise PowerError(_("A time window cannot start and end at the same time."))
    power, created = SitePower.objects.get_or_create(
        site=site,
        defaults={"community": site.community, "limit_a": limit_a},
    )
    was_managed = not created and power.managed
    power.phases, power.voltage_v, power.limit_a, power.margin_a = (
        phases,
        voltage_v,
        limit_a,
        margin_a,
    )
    power.load_balancing, power.solar, power.solar_minimum = load_balancing, solar, solar_minimum
    power.peak_shaving, power.peak_limit_kw, power.sharing = peak_shaving, peak_limit_kw, sharing
    power.updated_at = timezone.now()
    power.save()
    power.windows.all().delete()
    PeakWindow.objects.bulk_create(
        [
            PeakWindow(
                community=site.community,
                site_power=power,
                days=sorted(set(w.days)),
                start=w.start,
                end=w.end,
            )
            for w in windows
        ]
    )
    cleared = 0
    if was_managed and not power.managed:
        cleared = _clear_profiles(site, actor)
    audit(
        community=site.community,
        actor=actor,
        action="power.site",
        cleared=cleared,
        target=site.name,
        site_id=site.pk,
        phases=phases,
        limit_a=str(limit_a),
        margin_a=str(margin_a),
        modes=[
            mode
            for mode, on in (
                ("load_balancing", load_balancing),
                ("solar", solar),
                ("peak_shaving", peak_shaving),
            )
            if on
        ],
    )
    return power


def _clear_profiles(site: Site, actor: User | None) -> int:
    """The site is no longer managed: ask each of its chargers (through the command path) to
    drop the failsafe and dynamic profiles power management stored in it, and forget what the
    controller had sent. Returns the number of chargers asked."""
    chargers = list(
        Charger.objects.filter(site=site, power__isnull=False, ocpp_version__in=OcppVersion.values)
    )
    ChargerCommand.objects.bulk_create(
        [
            ChargerCommand(
                community=site.community,
                charger=charger,
                action=charging_profiles.CLEAR,
                payload=payload,
                from_portal=True,
                asked_by=actor if actor is not None and actor.pk else None,
            )
            for charger in chargers
            for payload in charging_profiles.clear_profiles(
                charger.ocpp_version,
                charging_profiles.reported(
                    charger.configuration, charging_profiles.STACK_LEVEL_KEYS
                ),
            )
        ]
    )
    ChargerPower.objects.filter(charger__site=site).update(
        **{
            name: None
            for name in ChargerPower.STATE_FIELDS
            if name not in ("limit_transaction", "outlet_limits", "outlet_obedience")
        },
        limit_transaction="",
        outlet_limits={},
        outlet_obedience={},
    )
    return len(chargers)


def _check_parent(site: Site, circuit: Circuit | None, parent: Circuit | None) -> None:
    if parent is None:
        return
    if parent.site_id != site.pk:
        raise PowerError(_("This circuit belongs to another site."))
    seen: Circuit | None = parent
    while seen is not None:
        if circuit is not None and seen.pk == circuit.pk:
            raise PowerError(_("A circuit cannot be fed by itself or by a circuit it feeds."))
        seen = seen.parent


@transaction.atomic
def save_circuit(
    *,
    site: Site,
    actor: User | None,
    name: str,
    limit_a: Decimal,
    parent: Circuit | None = None,
    circuit: Circuit | None = None,
) -> Circuit:
    """Add a circuit (a fuse feeding some chargers) to a site, or change one; circuits nest
    under the site or under another circuit of the same site."""
    _allowed(site, actor)
    _check_parent(site, circuit, parent)
    name = name.strip()
    taken = Circuit.objects.filter(site=site, name=name)
    if circuit is not None:
        taken = taken.exclude(pk=circuit.pk)
    if taken.exists():
        raise PowerError(_("A circuit with this name already exists on this site."))
    if circuit is None:
        circuit = Circuit(community=site.community, site=site)
    circuit.name, circuit.limit_a, circuit.parent = name, limit_a, parent
    circuit.save()
    audit(
        community=site.community,
        actor=actor,
        action="power.circuit",
        target=circuit.name,
        site_id=site.pk,
        circuit_id=circuit.pk,
        limit_a=str(limit_a),
    )
    return circuit


@transaction.atomic
def delete_circuit(*, circuit: Circuit, actor: User | None) -> None:
    """Remove a circuit; its chargers then sit directly on the site. A circuit feeding other
    circuits must be emptied first."""
    _allowed(circuit.site, actor)
    if circuit.children.exists():
        raise PowerError(_("This circuit feeds other circuits: move or remove them first."))
    audit(
        community=circuit.community,
        actor=actor,
        action="power.circuit_delete",
        target=circuit.name,
        site_id=circuit.site_id,
    )
    circuit.delete()


@transaction.atomic
def configure_charger(
    *,
    charger: Charger,
    actor: User | None,
    wiring: str,
    min_a: Decimal,
    max_a: Decimal,
    circuit: Circuit | None = None,
) -> ChargerPower:
    """How a charger is connected (its circuit, its phases) and the current it may be given
    (IEC 61851: at least 6 A)."""
    _allowed(charger.site, actor)
    if wiring not in Wiring.values:
        raise PowerError(_("Unknown wiring."))
    if min_a < Decimal("6"):
        raise PowerError(_("A charger cannot be given less than 6 A (IEC 61851)."))
    if max_a < min_a:
        raise PowerError(_("The maximum current must be at least the minimum."))
    if circuit is not None and circuit.site_id != charger.site_id:
        raise PowerError(_("This circuit belongs to another site."))
    power, _created = ChargerPower.objects.get_or_create(
        charger=charger, defaults={"community": charger.community}
    )
    power.wiring, power.min_a, power.max_a, power.circuit = wiring, min_a, max_a, circuit
    power.save(update_fields=["wiring", "min_a", "max_a", "circuit"])
    audit(
        community=charger.community,
        actor=actor,
        action="power.charger",
        target=charger.identity,
        charger_id=charger.pk,
        wiring=wiring,
        min_a=str(min_a),
        max_a=str(max_a),
        circuit_id=circuit.pk if circuit else None,
    )
    return power
