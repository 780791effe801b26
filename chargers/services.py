"""Portal-side writes on chargers and cards (the gateway's writes live in chargers.events).
Keyword-only verbs, one transaction, an audit entry, ChargerError with a translated message."""

import secrets

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils.translation import gettext as _

from communities.models import Membership
from communities.services import audit

from .models import (
    ChargeCard,
    Charger,
    ChargerCommand,
    OcppVersion,
    UnknownCharger,
    normalize_card_uid,
)


class ChargerError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _identity_taken(identity: str, exclude_pk=None) -> bool:
    # Identities are global (they name the websocket URL): check across every community.
    qs = Charger.objects.with_scopes_disabled().filter(identity__iexact=identity)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


@transaction.atomic
def register_charger(
    *,
    site,
    actor,
    identity: str,
    vendor: str,
    model: str = "",
    name: str = "",
    password: str = "",
    company=None,
) -> Charger:
    """Register a charger on a site by its identity (serial number); it is confirmed by its
    first connection with that identity. The optional basic-auth password is stored hashed.
    A refused-identity record for it is cleared: it is known now."""
    identity = identity.strip()
    if _identity_taken(identity):
        raise ChargerError(_("A charger with this serial number is already registered."))
    charger = Charger.objects.create(
        community=site.community,
        site=site,
        identity=identity,
        vendor=vendor,
        model=model,
        name=name,
        password_hash=make_password(password) if password else "",
        installer=company,
    )
    UnknownCharger.objects.filter(identity=identity, reason=UnknownCharger.Reason.UNKNOWN).delete()
    audit(
        community=site.community,
        actor=actor,
        action="charger.register",
        target=identity,
        charger_id=charger.pk,
        site_id=site.pk,
        password=bool(password),
    )
    return charger


@transaction.atomic
def update_charger(
    *,
    charger: Charger,
    actor,
    site,
    vendor: str,
    model: str = "",
    name: str = "",
    password: str = "",
    clear_password: bool = False,
) -> Charger:
    """Move a charger to another site of its community, rename it, change its vendor/model or
    its password (blank keeps the current one; clear_password removes it)."""
    if site.community_id != charger.community_id:
        raise ChargerError(_("This site belongs to another community."))
    charger.site, charger.vendor, charger.model, charger.name = site, vendor, model, name
    fields = ["site", "vendor", "model", "name"]
    if password:
        charger.password_hash = make_password(password)
        fields.append("password_hash")
    elif clear_password:
        charger.password_hash = ""
        fields.append("password_hash")
    charger.save(update_fields=fields)
    audit(
        community=charger.community,
        actor=actor,
        action="charger.update",
        target=charger.identity,
        charger_id=charger.pk,
        password_changed="password_hash" in fields,
    )
    return charger


@transaction.atomic
def add_card(*, community, actor, holder, uid: str, name: str = "") -> ChargeCard:
    """Give a member an RFID card. The UID is stored normalised (the gateway's spelling)."""
    uid = normalize_card_uid(uid)
    if not uid:
        raise ChargerError(_("Enter the card UID."))
    is_member = (
        Membership.objects.with_scopes_disabled()
        .filter(community=community, user=holder)
        .exclude(state=Membership.State.LEFT)
        .exists()
    )
    if not is_member:
        raise ChargerError(_("Cards can only be given to members of the community."))
    if ChargeCard.objects.with_scopes_disabled().filter(community=community, uid=uid).exists():
        raise ChargerError(_("This card is already registered in the community."))
    card = ChargeCard.objects.create(community=community, holder=holder, uid=uid, name=name)
    audit(
        community=community,
        actor=actor,
        action="card.add",
        target=uid,
        card_id=card.pk,
        holder_id=holder.pk,
    )
    return card


@transaction.atomic
def deactivate_card(*, card: ChargeCard, actor) -> ChargeCard:
    """Stop a card from working (lost, stolen, returned); its sessions stay."""
    if card.active:
        card.active = False
        card.save(update_fields=["active"])
        audit(
            community=card.community,
            actor=actor,
            action="card.deactivate",
            target=card.uid,
            card_id=card.pk,
        )
    return card


@transaction.atomic
def generate_charger_password(*, charger: Charger, actor) -> str:
    """A new random Basic-auth password for the charger (security profiles 1 and 2), stored
    hashed and returned once for the installer to enter in the charger."""
    password = secrets.token_urlsafe(15)[:20]
    charger.password_hash = make_password(password)
    charger.save(update_fields=["password_hash"])
    audit(
        community=charger.community,
        actor=actor,
        action="charger.password",
        target=charger.identity,
        charger_id=charger.pk,
    )
    return password


# Settings an installer changes from the portal: (label, OCPP 1.6 key, 2.0.1 component/variable).
CONFIGURABLE_SETTINGS = {
    "heartbeat_interval": ("HeartbeatInterval", ("OCPPCommCtrlr", "HeartbeatInterval")),
    "meter_sample_interval": (
        "MeterValueSampleInterval",
        ("SampledDataCtrlr", "TxUpdatedInterval"),
    ),
    "measurands": ("MeterValuesSampledData", ("SampledDataCtrlr", "TxUpdatedMeasurands")),
    "stop_measurands": ("StopTxnSampledData", ("SampledDataCtrlr", "TxEndedMeasurands")),
}


def _queue_command(*, charger: Charger, actor, action: str, payload: dict) -> ChargerCommand:
    command = ChargerCommand.objects.create(
        community=charger.community,
        charger=charger,
        action=action,
        payload=payload,
        asked_by=actor,
        from_portal=True,
    )
    audit(
        community=charger.community,
        actor=actor,
        action="charger.command",
        target=charger.identity,
        charger_id=charger.pk,
        command=action,
        command_uid=str(command.uid),
    )
    return command


@transaction.atomic
def change_configuration(*, charger: Charger, actor, setting: str, value: str) -> ChargerCommand:
    """Ask the charger to change one setting: a pending ChangeConfiguration (1.6) or SetVariables
    (2.0.1) command, delivered by the gateway holding the charger, which records its answer."""
    if setting not in CONFIGURABLE_SETTINGS:
        raise ChargerError(_("This setting cannot be changed from Sparklin."))
    if charger.ocpp_version not in OcppVersion.values:
        raise ChargerError(_("The charger has not connected yet: its OCPP version is unknown."))
    key16, (component, variable) = CONFIGURABLE_SETTINGS[setting]
    if charger.ocpp_version == OcppVersion.V16:
        action, payload = "ChangeConfiguration", {"key": key16, "value": value}
    else:
        action = "SetVariables"
        payload = {
            "setVariableData": [
                {
                    "attributeValue": value,
                    "component": {"name": component},
                    "variable": {"name": variable},
                }
            ]
        }
    return _queue_command(charger=charger, actor=actor, action=action, payload=payload)


@transaction.atomic
def reconfigure(*, charger: Charger, actor) -> ChargerCommand:
    """Read the configuration again and apply the vendor profile's settings (chargers already in
    service, or after a reset to factory settings)."""
    return _queue_command(charger=charger, actor=actor, action="Reconfigure", payload={})
