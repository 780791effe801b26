"""Fleet operations on one charger, asked from its page: restart it (soft or hard), unlock an
outlet, make an outlet available or unavailable, ask for a status or meter-value report, move the
charger to another site, delete a charger registered by mistake.

Every operation the charger must carry out is a pending `ChargerCommand` (the one command path:
the gateway holding the charger claims it, sends it and records the answer, see
`ocpp_gateway/commands.py`), with an audit entry of its own. The OCPP call is chosen here, per
version: 1.6 `Reset` Soft/Hard, `UnlockConnector`, `ChangeAvailability` with a connectorId,
`TriggerMessage`; 2.0.1 `Reset` OnIdle/Immediate, `UnlockConnector` with evseId and connectorId,
`ChangeAvailability` and `TriggerMessage` with an `evse`.

Who: managers and full-access installers (`chargers:operate`, `chargers:write` to move or
delete); a limited installer sees the page but cannot act. Services check it themselves."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from communities.permissions import user_can
from communities.services import audit

from .models import (
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    InventoryCharger,
    OcppVersion,
)
from .services import ChargerError, _queue_command

if TYPE_CHECKING:
    from accounts.models import User
    from communities.models import Site

# A command of the same kind still on its way blocks a second one for this long (a gateway that
# restarted mid-call leaves it "sent"; pending ones expire through the command bus).
IN_FLIGHT_SECONDS = 150
# What a report can be asked for, to the OCPP names (the same in both versions).
TRIGGERS = {"status": "StatusNotification", "meter_values": "MeterValues"}


def _allowed(charger: Charger, actor: User | None, permission: str) -> None:
    if not user_can(charger.community, actor, permission):
        raise ChargerError(_("You are not allowed to act on this charger."))


def _connected(charger: Charger) -> None:
    if not charger.connected or charger.ocpp_version not in OcppVersion.values:
        raise ChargerError(_("The charger is not connected: try again when it is back online."))


def _in_flight(charger: Charger, action: str, connector: Connector | None = None) -> bool:
    since = timezone.now() - timedelta(seconds=IN_FLIGHT_SECONDS)
    return ChargerCommand.objects.filter(
        charger=charger,
        action=action,
        connector=connector,
        status__in=[ChargerCommand.Status.PENDING, ChargerCommand.Status.SENT],
        created_at__gte=since,
    ).exists()


def _locked(charger: Charger) -> Charger:
    """The charger row, locked: two managers clicking at once queue one command, not two."""
    return Charger.objects.select_for_update().get(pk=charger.pk)


def _outlet(charger: Charger, connector: Connector) -> Connector:
    if connector.charger_id != charger.pk:
        raise ChargerError(_("This outlet belongs to another charger."))
    return connector


def _queue(
    charger: Charger,
    actor: User | None,
    action: str,
    payload: dict[str, Any],
    *,
    audit_action: str,
    detail: str,
    connector: Connector | None = None,
) -> ChargerCommand:
    if _in_flight(charger, action, connector):
        raise ChargerError(_("The same request is already on its way to this charger."))
    return _queue_command(
        charger=charger,
        actor=actor,
        action=action,
        payload=payload,
        connector=connector,
        audit_action=audit_action,
        audit_target=f"{charger.identity} ({detail})",
    )


@transaction.atomic
def request_reset(*, charger: Charger, actor: User | None, hard: bool) -> ChargerCommand:
    """Restart the charger. Soft (1.6 `Soft`, 2.0.1 `OnIdle`): the charger ends its sessions
    properly, or waits for them to end (2.0.1), then restarts. Hard (1.6 `Hard`, 2.0.1
    `Immediate`): a reboot now, sessions in progress stop at once — the portal asks for a
    confirmation first."""
    _allowed(charger, actor, "chargers:operate")
    charger = _locked(charger)
    _connected(charger)
    if charger.ocpp_version == OcppVersion.V16:
        payload = {"type": "Hard" if hard else "Soft"}
    else:
        payload = {"type": "Immediate" if hard else "OnIdle"}
    detail = _("hard") if hard else _("soft")
    return _queue(charger, actor, "Reset", payload, audit_action="charger.reset", detail=detail)


@transaction.atomic
def request_unlock(*, charger: Charger, connector: Connector, actor: User | None) -> ChargerCommand:
    """Release the cable stuck in an outlet (`UnlockConnector`). Refused while a session is in
    progress on it: stopping the session comes first (a 1.6 charger would end it silently)."""
    _allowed(charger, actor, "chargers:operate")
    charger = _locked(charger)
    connector = _outlet(charger, connector)
    _connected(charger)
    busy = ChargingSession.objects.filter(
        connector=connector, state=ChargingSession.State.ACTIVE
    ).exists()
    if busy:
        raise ChargerError(_("A charging session is in progress on this outlet: stop it first."))
    payload: dict[str, Any]
    if charger.ocpp_version == OcppVersion.V16:
        payload = {"connectorId": connector.connector_id}
    else:
        payload = {"evseId": connector.evse_id, "connectorId": connector.connector_id}
    return _queue(
        charger,
        actor,
        "UnlockConnector",
        payload,
        audit_action="charger.unlock",
        detail=str(connector),
        connector=connector,
    )


@transaction.atomic
def request_availability(
    *, charger: Charger, connector: Connector, actor: User | None, available: bool
) -> ChargerCommand:
    """Take an outlet out of service (maintenance, a damaged cable) or back into service
    (`ChangeAvailability` Inoperative/Operative). A session in progress is not cut: the charger
    answers "Scheduled" and applies it once the session ends."""
    _allowed(charger, actor, "chargers:operate")
    charger = _locked(charger)
    connector = _outlet(charger, connector)
    _connected(charger)
    status = "Operative" if available else "Inoperative"
    payload: dict[str, Any]
    if charger.ocpp_version == OcppVersion.V16:
        payload = {"connectorId": connector.connector_id, "type": status}
    else:
        payload = {
            "operationalStatus": status,
            "evse": {"id": connector.evse_id, "connectorId": connector.connector_id},
        }
    detail = f"{connector}: {_('available') if available else _('unavailable')}"
    return _queue(
        charger,
        actor,
        "ChangeAvailability",
        payload,
        audit_action="charger.availability",
        detail=detail,
        connector=connector,
    )


@transaction.atomic
def request_report(
    *, charger: Charger, actor: User | None, report: str, connector: Connector | None = None
) -> ChargerCommand:
    """Ask the charger to send now its outlet status (`StatusNotification`) or a meter reading
    (`MeterValues`), for one outlet or the whole charger (`TriggerMessage`): the answer arrives
    like any report and updates the page."""
    _allowed(charger, actor, "chargers:operate")
    if report not in TRIGGERS:
        raise ChargerError(_("This report cannot be asked for."))
    charger = _locked(charger)
    if connector is not None:
        connector = _outlet(charger, connector)
    _connected(charger)
    payload: dict[str, Any] = {"requestedMessage": TRIGGERS[report]}
    if connector is not None:
        if charger.ocpp_version == OcppVersion.V16:
            payload["connectorId"] = connector.connector_id
        else:
            payload["evse"] = {"id": connector.evse_id, "connectorId": connector.connector_id}
    detail = f"{TRIGGERS[report]}{f', {connector}' if connector else ''}"
    return _queue(
        charger,
        actor,
        "TriggerMessage",
        payload,
        audit_action="charger.trigger",
        detail=detail,
        connector=connector,
    )


@transaction.atomic
def move_charger(*, charger: Charger, actor: User | None, site: Site) -> Charger:
    """Move a charger to another site of its community (installed elsewhere, or registered on
    the wrong site). Its sessions stay its sessions: history follows the charger, so a report by
    site shows them under the new site."""
    _allowed(charger, actor, "chargers:write")
    if site.community_id != charger.community_id:
        raise ChargerError(_("This site belongs to another community."))
    charger = _locked(charger)
    if site.pk == charger.site_id:
        raise ChargerError(_("The charger is already on this site."))
    previous = charger.site
    charger.site = site
    charger.save(update_fields=["site"])
    audit(
        community=charger.community,
        actor=actor,
        action="charger.move",
        target=f"{charger.identity} ({previous.name} → {site.name})",
        charger_id=charger.pk,
        from_site_id=previous.pk,
        to_site_id=site.pk,
    )
    return charger


def deletion_refusal(charger: Charger) -> str | None:
    """Why `charger` cannot be deleted, or None. A charger that recorded charging sessions is
    never deleted: its sessions are billing history (expense notes, exports, a driver's data)
    and must keep naming the charger they happened on. Deletion is for a charger registered by
    mistake (wrong serial number, wrong community), which has none."""
    if ChargingSession.objects.filter(charger=charger).exists():
        return _(
            "This charger has recorded charging sessions: they are billing history and are "
            "kept, so the charger cannot be deleted. Move it to another site instead."
        )
    return None


@transaction.atomic
def delete_charger(*, charger: Charger, actor: User | None) -> str:
    """Delete a charger registered by mistake: its outlets, commands and message log go with it;
    refused when it has sessions (see `deletion_refusal`). A charger claimed from the inventory
    is released, so it can be claimed again on the right site. Gateways forget it at their next
    directory reload: if it connects again it is refused as an unknown identity. Returns its
    serial number."""
    _allowed(charger, actor, "chargers:write")
    charger = _locked(charger)
    refusal = deletion_refusal(charger)
    if refusal:
        raise ChargerError(refusal)
    InventoryCharger.objects.filter(charger=charger).update(
        charger=None, claimed_at=None, claimed_by=None
    )
    identity, community = charger.identity, charger.community
    audit(
        community=community,
        actor=actor,
        action="charger.delete",
        target=identity,
        charger_id=charger.pk,
        site_id=charger.site_id,
    )
    charger.delete()
    return identity
