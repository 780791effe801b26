"""Portal-side writes on chargers and cards (the gateway's writes live in chargers.events).
Keyword-only verbs, one transaction, an audit entry, ChargerError with a translated message."""

import secrets
from datetime import timedelta
from functools import partial
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from communities.models import Membership
from communities.permissions import role_has
from communities.services import audit

# The one declared exception to the layering (tests/test_layering.py): a remote start obeys the
# rules of use like a card presented at the charger.
from rules.evaluation import Decision, evaluate_now, record_refusal

from .hashers import hash_generated_password
from .models import (
    ChargeCard,
    Charger,
    ChargerCommand,
    ChargingSession,
    Connector,
    OcppVersion,
    UnknownCharger,
    normalize_card_uid,
)
from .stamps import changed


class ChargerError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


class ChargerRefused(ChargerError):
    """A remote start refused by a rule of use; `request_remote_start` records it once the
    refused transaction is rolled back."""

    def __init__(self, message, *, decision: Decision, refusal: dict[str, Any]):
        super().__init__(message)
        self.decision = decision
        self.refusal = refusal


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
    """Rename a charger, change its vendor/model or its password (blank keeps the current one;
    clear_password removes it), or move it to another site of its community
    (`chargers.operations.move_charger`)."""
    if site.pk != charger.site_id:
        from .operations import move_charger  # the one rule (and audit entry) for a move

        charger = move_charger(charger=charger, actor=actor, site=site)
    charger.vendor, charger.model, charger.name = vendor, model, name
    fields = ["vendor", "model", "name"]
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


def card_conflict(*, community, uid: str) -> str:
    """Why `uid` cannot be given to someone in `community`, or "" when it can: it is registered
    here to a person (active or deactivated: a lost card is reactivated, not registered again).
    A card freed by an account deletion (no holder) can be registered again."""
    card = ChargeCard.objects.with_scopes_disabled().filter(community=community, uid=uid).first()
    if card is None or card.holder_id is None:
        return ""
    holder = card.holder
    name = (holder.get_full_name() or str(holder)) if holder else ""
    if card.active:
        return _("This card is already registered in the community (held by %(name)s).") % {
            "name": name
        }
    return _(
        "This card is already registered in the community (held by %(name)s, deactivated): "
        "reactivate it instead."
    ) % {"name": name}


@transaction.atomic
def add_card(*, community, actor, holder, uid: str, name: str = "", expires_on=None) -> ChargeCard:
    """Give a member an RFID card. The UID is stored normalised (the gateway's spelling); a
    card freed by an account deletion is given again (its row, kept for the sessions'
    accounting, gets the new holder)."""
    uid = normalize_card_uid(uid)
    if not uid:
        raise ChargerError(_("Enter the card UID."))
    is_member = Membership.objects.with_scopes_disabled().current().of(community, holder).exists()
    if not is_member:
        raise ChargerError(_("Cards can only be given to members of the community."))
    conflict = card_conflict(community=community, uid=uid)
    if conflict:
        raise ChargerError(conflict)
    card = (
        ChargeCard.objects.with_scopes_disabled()
        .select_for_update()
        .filter(community=community, uid=uid, holder=None)
        .first()
    )
    if card is None:
        card = ChargeCard.objects.create(
            community=community, holder=holder, uid=uid, name=name, expires_on=expires_on
        )
    else:
        card.holder, card.name, card.expires_on, card.active = holder, name, expires_on, True
        card.save(update_fields=["holder", "name", "expires_on", "active"])
    audit(
        community=community,
        actor=actor,
        action="card.add",
        target=uid,
        card_id=card.pk,
        holder_id=holder.pk,
    )
    changed(community_id=community.pk)
    return card


@transaction.atomic
def update_card(*, card: ChargeCard, actor, name: str, expires_on) -> ChargeCard:
    """Rename a card or change its expiry date (none: no expiry)."""
    card.name, card.expires_on = name, expires_on
    card.save(update_fields=["name", "expires_on"])
    audit(
        community=card.community,
        actor=actor,
        action="card.update",
        target=card.uid,
        card_id=card.pk,
        expires_on=expires_on.isoformat() if expires_on else None,
    )
    changed(community_id=card.community_id)
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
        changed(community_id=card.community_id)
    return card


@transaction.atomic
def reactivate_card(*, card: ChargeCard, actor) -> ChargeCard:
    """Make a deactivated card work again (found again), for a holder still a member."""
    if card.active:
        return card
    if card.holder_id is None or not (
        Membership.objects.with_scopes_disabled()
        .current()
        .filter(community_id=card.community_id, user_id=card.holder_id)
        .exists()
    ):
        raise ChargerError(_("This card's holder is no longer a member: give it to someone."))
    card.active = True
    card.save(update_fields=["active"])
    audit(
        community=card.community,
        actor=actor,
        action="card.reactivate",
        target=card.uid,
        card_id=card.pk,
    )
    changed(community_id=card.community_id)
    return card


@transaction.atomic
def generate_charger_password(*, charger: Charger, actor) -> str:
    """A new random Basic-auth password for the charger (security profiles 1 and 2), stored
    hashed and returned once for the installer to enter in the charger."""
    password = secrets.token_urlsafe(15)[:20]
    # 120 bits: the fast salted hash (chargers.hashers), so checking it never stalls the gateway.
    charger.password_hash = hash_generated_password(password)
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


def _queue_command(
    *,
    charger: Charger,
    actor,
    action: str,
    payload: dict,
    audit_action: str = "charger.command",
    audit_target: str = "",
    **links,
) -> ChargerCommand:
    """A pending portal command (the command bus delivers it) and its audit entry: a generic
    "sent a command" unless the caller names its own (fleet operations, `chargers.operations`)."""
    command = ChargerCommand.objects.create(
        community=charger.community,
        charger=charger,
        action=action,
        payload=payload,
        asked_by=actor,
        from_portal=True,
        **links,
    )
    audit(
        community=charger.community,
        actor=actor,
        action=audit_action,
        target=audit_target or charger.identity,
        charger_id=charger.pk,
        command=action,
        command_uid=str(command.uid),
    )
    return command


def queue_command(
    *, charger: Charger, actor, action: str, payload: dict, **links
) -> ChargerCommand:
    """A pending command for the gateway holding the charger (the one command path), audited;
    for other apps' services (rules: the stop of a session that reached a limit)."""
    return _queue_command(charger=charger, actor=actor, action=action, payload=payload, **links)


@transaction.atomic
def change_configuration(*, charger: Charger, actor, setting: str, value: str) -> ChargerCommand:
    """Ask the charger to change one setting: a pending ChangeConfiguration (1.6) or SetVariables
    (2.0.1) command, delivered by the gateway holding the charger, which records its answer."""
    if setting not in CONFIGURABLE_SETTINGS:
        raise ChargerError(_("This setting cannot be changed from Sparklin."))
    if charger.ocpp_version not in OcppVersion.values:
        raise ChargerError(_("The charger has not connected yet: its OCPP version is unknown."))
    key16, (component, variable) = CONFIGURABLE_SETTINGS[setting]
    payload: dict[str, Any]
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


# --- charging from the portal -------------------------------------------------------------------
REMOTE_START_ACTIONS = ("RemoteStartTransaction", "RequestStartTransaction")
REMOTE_STOP_ACTIONS = ("RemoteStopTransaction", "RequestStopTransaction")
REMOTE_ACTIONS = REMOTE_START_ACTIONS + REMOTE_STOP_ACTIONS
APP_CARD_PREFIX = "APP"
APP_CARD_NAME = "Sparklin app"
# A sent command whose answer never came back (gateway restarted mid-call) stops blocking a new
# one after this long; pending ones expire through the command bus (PENDING_TTL).
IN_FLIGHT_SECONDS = 150


def _current_membership(community, user) -> Membership:
    """The user's membership, locked: serialises a user's remote starts (one app card)."""
    membership = (
        Membership.objects.with_scopes_disabled()
        .current()
        .of(community, user)
        .select_for_update()
        .first()
    )
    if membership is None:
        raise ChargerError(_("You are no longer a member of this community."))
    return membership


def _in_flight(**filters) -> bool:
    since = timezone.now() - timedelta(seconds=IN_FLIGHT_SECONDS)
    return ChargerCommand.objects.filter(
        status__in=[ChargerCommand.Status.PENDING, ChargerCommand.Status.SENT],
        created_at__gte=since,
        **filters,
    ).exists()


def _connected(charger: Charger) -> None:
    if not charger.connected or charger.ocpp_version not in OcppVersion.values:
        raise ChargerError(_("The charger is not connected: try again when it is back online."))


def app_card_for(*, community, user, actor=None) -> ChargeCard:
    """The card a portal start is authorised with: the user's active card in the community, or
    else their virtual "Sparklin app" token, created the first time (uid APP + 10 hex digits).
    The charger then presents it like any card, so the existing card decision authorises the
    start and the session is attributed to the user. A deactivated app card is not replaced:
    a manager blocked it."""
    card = (
        ChargeCard.objects.filter(community=community, holder=user, active=True)
        .order_by("created_at", "pk")
        .first()
    )
    if card is not None:
        return card
    blocked = ChargeCard.objects.filter(
        community=community, holder=user, uid__startswith=APP_CARD_PREFIX, name=APP_CARD_NAME
    ).exists()
    if blocked:
        raise ChargerError(_("Your Sparklin app card has been deactivated: ask a manager."))
    uid = APP_CARD_PREFIX + secrets.token_hex(5).upper()
    while ChargeCard.objects.filter(community=community, uid=uid).exists():  # pragma: no cover
        uid = APP_CARD_PREFIX + secrets.token_hex(5).upper()
    card = ChargeCard.objects.create(community=community, holder=user, uid=uid, name=APP_CARD_NAME)
    audit(
        community=community,
        actor=actor or user,
        action="card.add",
        target=uid,
        card_id=card.pk,
        holder_id=user.pk,
        virtual=True,
    )
    return card


def request_remote_start(*, connector: Connector, user) -> ChargerCommand:
    """Ask the charger to start charging on `connector` for `user` (see `_remote_start`). A
    refusal by a rule of use is recorded for the driver and the managers, then raised."""
    try:
        return _remote_start(connector=connector, user=user)
    except ChargerRefused as refused:
        record_refusal(decision=refused.decision, action="RemoteStart", **refused.refusal)
        raise


@transaction.atomic
def _remote_start(*, connector: Connector, user) -> ChargerCommand:
    """Ask the charger to start charging on `connector` for `user` (OCPP 1.6
    RemoteStartTransaction, 2.0.1 RequestStartTransaction), authorised with the user's card
    (their virtual app card when they have none). A pending command the gateway delivers; the
    session appears when the charger starts it. Refused when the charger is offline, the outlet
    is busy, faulted or unavailable, a start for it is already on its way, or a rule of use
    (`rules.evaluation`) does not let the user charge there now."""
    community = connector.charger.community
    _current_membership(community, user)
    connector = Connector.objects.select_for_update().select_related("charger").get(pk=connector.pk)
    charger = connector.charger
    _connected(charger)
    busy = ChargingSession.objects.filter(
        connector=connector, state=ChargingSession.State.ACTIVE
    ).exists()
    if busy or not connector.remote_startable:
        raise ChargerError(
            _("This outlet cannot start charging now (%(state)s).")
            % {"state": connector.get_state_display().lower()}
        )
    if _in_flight(connector=connector, action__in=REMOTE_START_ACTIONS):
        raise ChargerError(_("A start is already on its way to this outlet."))
    card = app_card_for(community=community, user=user)
    # The rules of use, as the gateway applies them to a card presented at the outlet.
    decision = evaluate_now(connector=connector, uid=card.uid)
    if not decision.allowed:
        raise ChargerRefused(
            _("You cannot charge on this outlet now: %(reason)s.") % {"reason": decision.label},
            decision=decision,
            refusal={
                "community_id": community.pk,
                "charger_id": charger.pk,
                "evse_id": connector.evse_id,
                "uid": card.uid,
                "holder_id": user.pk,
            },
        )
    if charger.ocpp_version == OcppVersion.V16:
        action = "RemoteStartTransaction"
        payload = {"connectorId": connector.connector_id, "idTag": card.uid}
    else:
        action, payload = "RequestStartTransaction", {}
    command = _queue_command(
        charger=charger, actor=user, action=action, payload=payload, connector=connector
    )
    if action == "RequestStartTransaction":
        # remoteStartId links the station's TransactionEvent to this request: the row's pk is
        # positive and unique, and the row is not visible to the gateway before this commit.
        command.payload = {
            "evseId": connector.evse_id,
            "remoteStartId": command.pk,
            "idToken": {"idToken": card.uid, "type": "Central"},
        }
        command.save(update_fields=["payload"])
    return command


@transaction.atomic
def request_remote_stop(*, session: ChargingSession, user) -> ChargerCommand:
    """Ask the charger to stop a session in progress (OCPP 1.6 RemoteStopTransaction, 2.0.1
    RequestStopTransaction). Drivers stop their own sessions; managers any session."""
    membership = _current_membership(session.community, user)
    session = (
        ChargingSession.objects.select_for_update().select_related("charger").get(pk=session.pk)
    )
    if session.holder_id != user.pk and not role_has(membership.role, "sessions:view_all"):
        raise ChargerError(_("You can only stop your own charging sessions."))
    if session.state != ChargingSession.State.ACTIVE:
        raise ChargerError(_("This charging session has already ended."))
    charger = session.charger
    _connected(charger)
    if _in_flight(session=session, action__in=REMOTE_STOP_ACTIONS):
        raise ChargerError(_("A stop is already on its way to this charger."))
    payload: dict[str, Any]
    if charger.ocpp_version == OcppVersion.V16:
        try:
            transaction_id = int(session.transaction_id)
        except ValueError:
            raise ChargerError(_("The charger does not know this session.")) from None
        action, payload = "RemoteStopTransaction", {"transactionId": transaction_id}
    else:
        action, payload = "RequestStopTransaction", {"transactionId": session.transaction_id}
    return _queue_command(
        charger=charger,
        actor=user,
        action=action,
        payload=payload,
        connector=session.connector,
        session=session,
    )


# --- events the worker could not record -------------------------------------------------------
def retry_quarantined_events(*, charger: Charger, actor, entries=None) -> int:
    """Apply again the quarantined events of `charger` (all its open entries, or `entries`):
    each entry is marked "retry asked" and a task re-applies it after commit — resolved when
    its events now apply, open again with the new error when they do not. Applying events is
    idempotent, so retrying what was partly recorded changes nothing twice. Returns how many
    entries were queued."""
    from .models import QuarantinedEvents
    from .tasks import retry_quarantined

    with transaction.atomic():
        qs = QuarantinedEvents.objects.select_for_update().filter(
            charger=charger, state=QuarantinedEvents.State.OPEN
        )
        if entries is not None:
            qs = qs.filter(pk__in=[e.pk for e in entries])
        ids = list(qs.values_list("pk", flat=True))
        if not ids:
            raise ChargerError(_("There are no events to retry for this charger."))
        QuarantinedEvents.objects.filter(pk__in=ids).update(state=QuarantinedEvents.State.RETRIED)
        audit(
            community=charger.community,
            actor=actor,
            action="charger.events_retry",
            target=charger.identity,
            charger_id=charger.pk,
            entries=ids,
        )
        for pk in ids:
            transaction.on_commit(partial(retry_quarantined.delay, pk))
    return len(ids)
