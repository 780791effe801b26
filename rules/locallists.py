"""Offline authorization: each charger's local authorization list and offline behaviour, kept
in line with the cards and the rules of use through the one command path.

`sync_local_lists(community=…)` (beat, every `RULES_LOCAL_LIST_SECONDS`, so a change of cards or
rules reaches the lists within that time) looks at every connected charger of the community:
1. the list it is sending: accepted → that version and those entries are the charger's;
   NotSupported → the charger is flagged and left alone; VersionMismatch or Failed → the next
   list is sent in full; no answer → sent again;
2. the entries the charger should hold: the active, unexpired cards of current members whose
   holder may charge on at least one of its outlets (`rules.evaluation.local_entries`; weekly
   windows and monthly limits cannot be expressed in a list: they apply online);
3. a `SendLocalList` (1.6) / `SendLocalList` (2.0.1) command when they differ: Full the first
   time (or after a mismatch), else Differential (added entries with their status, removed ones
   without), version + 1;
4. the offline behaviour of the site's `OfflinePolicy` (known cards / everyone / nobody), sent
   once per change: 1.6 `LocalAuthListEnabled`, `LocalAuthorizeOffline`,
   `AllowOfflineTxForUnknownId`, `LocalPreAuthorize` (off: online, Sparklin decides); 2.0.1
   `LocalAuthListCtrlr.Enabled`, `AuthCtrlr.LocalAuthorizeOffline`,
   `AuthCtrlr.OfflineTxForUnknownIdEnabled`, `AuthCtrlr.LocalPreAuthorize`;
5. free charging (`rules.evaluation.free_vend`: every outlet free at all times), sent once per
   change and undone when the rules change back: 2.0.1 `AuthCtrlr.Enabled` false (the station
   then starts transactions without authorization: no idToken, or type NoAuthorization with an
   empty one, which the gateway records as free); 1.6 has no standard key, so a vendor's
   free-vend keys where known (`FREE_VEND_KEYS_16`: Spark 1, Zaptec, Easee — by vendor, or seen
   in the configuration the charger reported) with their idTag key; any other 1.6 charger keeps asking, and the
   gateway accepts every idTag on its free outlets (`free_vend` = "gateway");
6. after each boot or reconnection, `GetLocalListVersion`: a version other than the one Sparklin
   had accepted (a factory reset, a replaced unit, a list lost) makes the next list a full one
   and sends the offline behaviour again; 1.6's -1 (no local list support) flags the charger."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from chargers.models import Charger, ChargerCommand, OcppVersion, Vendor
from chargers.services import ChargerError, queue_command
from communities.models import Community

from .evaluation import build_snapshot, free_vend, local_entries
from .models import LocalList, OfflineMode, OfflinePolicy

# 2.0.1 needs a token type in a list entry; stored UIDs have none (one card whatever its type),
# and RFID cards, the ones lists are for, are ISO 14443.
TOKEN_TYPE = "ISO14443"
MAX_ENTRIES = 5000  # beyond this the list is cut (chargers cap theirs far lower)


# 1.6 has no standard free-vend key: the keys vendors document, as (switch key, idTag key).
# Data, not code: a vendor's keys found later are one more line.
FREE_VEND_KEYS_16: tuple[tuple[str, str], ...] = (
    ("FreeVendEnabled", "FreeVendIdTag"),  # Spark 1, our own charger
    # Zaptec Go / Pro in native OCPP 1.6J (Zaptec's "OCPP 1.6J non-standard implementation
    # guide": FreeCharging boolean, FreeChargingIdTag CiString20).
    ("FreeCharging", "FreeChargingIdTag"),
    # Easee (its "OCPP FreeCharging" page): lower-case keys, the idTag key required.
    ("freecharging", "rfidtagfreecharging"),
)
# Vendors whose chargers have them whatever they reported (one that turns out not to answers
# NotSupported, and the gateway accepts every card instead). Volt Time documents none.
FREE_VEND_16 = {
    Vendor.SPARK1.value: FREE_VEND_KEYS_16[0],
    Vendor.ZAPTEC.value: FREE_VEND_KEYS_16[1],
}
# The idTag a 1.6 free-vend charger starts its transactions with (any idTag is accepted on a
# free outlet; this one makes them recognisable in the message log).
FREE_VEND_ID_TAG = "FREEVEND"


def _free_vend_keys_16(charger: Charger) -> tuple[str, str | None] | None:
    """The charger's free-vend keys: its vendor's, else the first documented pair whose switch
    its reported configuration has (keys compared without case, as OCPP does; sent with the
    charger's own spelling), with the idTag key only when it has that one too."""
    known = FREE_VEND_16.get(charger.vendor)
    if known is not None:
        return known
    reported = {str(key).lower(): str(key) for key in (charger.configuration or {})}
    found: list[tuple[str, str | None]] = []
    for switch, id_tag in FREE_VEND_KEYS_16:
        if switch.lower() in reported:
            found.append((reported[switch.lower()], reported.get(id_tag.lower())))
    # Two vendors may spell one switch alike: the pair whose idTag key is there too wins.
    found.sort(key=lambda pair: pair[1] is None)
    return found[0] if found else None


def free_vend_commands(charger: Charger, free: bool) -> tuple[str, list[tuple[str, dict]]]:
    """How free charging is applied to (or taken off) this charger: ("charger", its commands)
    when the charger can be told to stop asking for cards, else ("gateway", []) — the gateway
    then accepts any idTag on its free outlets. `free` False gives the commands that restore
    authorization (nothing for "gateway")."""
    if charger.ocpp_version == OcppVersion.V201:
        value = "false" if free else "true"
        return "charger", [
            (
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "attributeValue": value,
                            "component": {"name": "AuthCtrlr"},
                            "variable": {"name": "Enabled"},
                        }
                    ]
                },
            )
        ]
    keys = _free_vend_keys_16(charger)
    if keys is None:
        return "gateway", []
    switch, id_tag_key = keys
    commands: list[tuple[str, dict]] = [
        ("ChangeConfiguration", {"key": switch, "value": "true" if free else "false"})
    ]
    if free and id_tag_key:
        commands.insert(0, ("ChangeConfiguration", {"key": id_tag_key, "value": FREE_VEND_ID_TAG}))
    return "charger", commands


def _offline_values(mode: str) -> dict[str, str]:
    offline = "false" if mode == OfflineMode.NOBODY else "true"
    unknown = "true" if mode == OfflineMode.EVERYONE else "false"
    return {"list": "true", "offline": offline, "unknown": unknown, "pre": "false"}


def offline_commands(version: str, mode: str) -> list[tuple[str, dict[str, Any]]]:
    """The configuration commands that set the offline behaviour `mode`."""
    v = _offline_values(mode)
    if version == OcppVersion.V16:
        return [
            ("ChangeConfiguration", {"key": key, "value": value})
            for key, value in (
                ("LocalAuthListEnabled", v["list"]),
                ("LocalAuthorizeOffline", v["offline"]),
                ("AllowOfflineTxForUnknownId", v["unknown"]),
                ("LocalPreAuthorize", v["pre"]),
            )
        ]
    variables = [
        ("LocalAuthListCtrlr", "Enabled", v["list"]),
        ("AuthCtrlr", "LocalAuthorizeOffline", v["offline"]),
        ("AuthCtrlr", "OfflineTxForUnknownIdEnabled", v["unknown"]),
        ("AuthCtrlr", "LocalPreAuthorize", v["pre"]),
    ]
    return [
        (
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": value,
                        "component": {"name": component},
                        "variable": {"name": variable},
                    }
                    for component, variable, value in variables
                ]
            },
        )
    ]


def list_payload(
    version: str, list_version: int, full: bool, add: dict[str, str], remove: list[str]
) -> dict[str, Any]:
    """A SendLocalList payload: `add` (uid → status) with their info, `remove` without."""
    update = "Full" if full else "Differential"
    if version == OcppVersion.V16:
        entries: list[dict[str, Any]] = [
            {"idTag": uid, "idTagInfo": {"status": status}} for uid, status in sorted(add.items())
        ]
        entries += [{"idTag": uid} for uid in sorted(remove)]
        return {
            "listVersion": list_version,
            "updateType": update,
            "localAuthorizationList": entries,
        }
    entries = [
        {"idToken": {"idToken": uid, "type": TOKEN_TYPE}, "idTokenInfo": {"status": status}}
        for uid, status in sorted(add.items())
    ]
    entries += [{"idToken": {"idToken": uid, "type": TOKEN_TYPE}} for uid in sorted(remove)]
    payload: dict[str, Any] = {"versionNumber": list_version, "updateType": update}
    if entries:
        payload["localAuthorizationList"] = entries
    return payload


# CALLERROR codes of a charger without the feature at all (OCPP-J: an action it does not
# implement), e.g. a 1.6 charger without the LocalAuthListManagement profile.
_UNSUPPORTED_ERRORS = ("NotImplemented", "NotSupported")


def _answer_status(command: ChargerCommand) -> str:
    """The charger's answer: its `status`, or "NotSupported" for a CALLERROR saying it does
    not implement the action."""
    response = command.response if isinstance(command.response, dict) else {}
    if response.get("errorCode") in _UNSUPPORTED_ERRORS:
        return "NotSupported"
    return str(response.get("status") or "")


def _settle(state: LocalList) -> bool:
    """Take the outcome of the list being sent into account; False while it is on its way."""
    command = state.pending_command
    if command is None:
        return True
    if command.status in (ChargerCommand.Status.PENDING, ChargerCommand.Status.SENT):
        return False
    answer = _answer_status(command)
    if command.status == ChargerCommand.Status.ACCEPTED:
        state.version, state.entries = state.pending_version, state.pending_entries
        state.supported, state.synced_at, state.last_error = True, command.updated_at, ""
        state.reported_version = None  # what the charger holds now is this list
    elif answer == "NotSupported":
        state.supported, state.last_error = False, "NotSupported"
    elif answer in ("VersionMismatch", "Failed"):
        state.version, state.entries, state.last_error = 0, {}, answer  # next one in full
    else:
        state.last_error = command.status  # no answer: sent again
    state.pending_command, state.pending_version, state.pending_entries = None, 0, {}
    return True


def _reported_version(command: ChargerCommand) -> int | None:
    response = command.response if isinstance(command.response, dict) else {}
    value = response.get("listVersion", response.get("versionNumber"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _settle_version(state: LocalList) -> None:
    """Take the charger's answer to GetLocalListVersion into account (see the docstring)."""
    command = state.version_command
    if command is None or command.status in (
        ChargerCommand.Status.PENDING,
        ChargerCommand.Status.SENT,
    ):
        return
    state.version_command = None
    if _answer_status(command) == "NotSupported":
        state.supported, state.last_error = False, "NotSupported"
        state.version_checked_at = command.updated_at
        return
    reported = _reported_version(command)
    if command.status != ChargerCommand.Status.ACCEPTED or reported is None:
        # No usable answer (the charger hung up meanwhile, timed out): the version counts as
        # asked when the question was put, so a connection opened since asks again, and this
        # one does not ask forever.
        state.version_checked_at = command.created_at
        return
    state.version_checked_at = command.updated_at
    state.reported_version = reported
    if reported == -1:  # 1.6: "the Charge Point does not support Local Authorization Lists"
        state.supported, state.last_error = False, "NotSupported"
    elif reported != state.version and state.pending_command is None:
        # The charger lost or replaced what it was sent: start again from a full list, and
        # tell it the offline behaviour again (a factory reset loses that too).
        state.version, state.entries, state.offline_mode = 0, {}, ""
        if state.free_vend == "charger":
            state.free_vend = ""  # sent again below if the outlets are still free
        state.last_error = f"VersionMismatch: {reported}"


def _ask_version(charger: Charger, state: LocalList) -> None:
    """Ask the charger its list version once per connection: after each boot, and after each
    reconnection without a boot (`connected_since`, the `connected` event of every websocket
    the gateway accepts), which is how most chargers come back from a network drop."""
    if state.version_command_id is not None or state.pending_command_id is not None:
        return  # already asked, or a list is on its way (its answer tells the version)
    if state.supported is False or state.version == 0:
        return  # no list to check: a full one follows anyway
    moments = (charger.last_boot_at, charger.connected_since)
    since = max((t for t in moments if t is not None), default=None)
    known = max((t for t in (state.version_checked_at, state.synced_at) if t), default=None)
    if since is None or (known is not None and known >= since):
        return  # the version is known since the charger last booted or connected
    try:
        state.version_command = queue_command(
            charger=charger, actor=None, action="GetLocalListVersion", payload={}
        )
    except ChargerError:
        pass


def _sync_free_vend(charger: Charger, state: LocalList, free: bool) -> None:
    """Tell the charger to stop (or start again) asking for cards, once per change. A charger
    that refuses the setting keeps asking, and the gateway accepts every card on its free
    outlets ("gateway")."""
    command = state.free_vend_command
    if command is not None and command.status not in (
        ChargerCommand.Status.PENDING,
        ChargerCommand.Status.SENT,
    ):
        if command.status != ChargerCommand.Status.ACCEPTED and state.free_vend == "charger":
            state.free_vend = "gateway"
        state.free_vend_command = None
    if (state.free_vend != "") == free:
        return
    how, commands = free_vend_commands(charger, free)
    if not free and state.free_vend != "charger":
        commands = []  # only the gateway applied it: nothing to undo on the charger
    try:
        for action, payload in commands:
            state.free_vend_command = queue_command(
                charger=charger, actor=None, action=action, payload=payload
            )
    except ChargerError:
        return  # tried again at the next sync
    state.free_vend = how if free else ""


@transaction.atomic
def sync_charger(charger: Charger, snapshot: dict[str, Any], mode: str) -> LocalList:
    """Bring one charger's list, offline behaviour and free charging in line (see the module
    docstring)."""
    state, _created = LocalList.objects.select_for_update().get_or_create(
        charger=charger, defaults={"community_id": charger.community_id}
    )
    settled = _settle(state)
    _settle_version(state)
    _ask_version(charger, state)
    _sync_free_vend(charger, state, free_vend(snapshot, charger.pk))
    if not settled or state.supported is False:
        state.in_sync = False
        state.save()
        return state
    wanted = {} if mode == OfflineMode.NOBODY else local_entries(snapshot, charger.pk)
    wanted = dict(sorted(wanted.items())[:MAX_ENTRIES])
    state.in_sync = state.version > 0 and wanted == state.entries
    if not state.in_sync:
        full = state.version == 0
        add = wanted if full else {u: s for u, s in wanted.items() if state.entries.get(u) != s}
        remove = [] if full else [u for u in state.entries if u not in wanted]
        version = state.version + 1
        try:
            state.pending_command = queue_command(
                charger=charger,
                actor=None,
                action="SendLocalList",
                payload=list_payload(charger.ocpp_version, version, full, add, remove),
            )
        except ChargerError:
            pass
        else:
            state.pending_version, state.pending_entries = version, wanted
    if state.offline_mode != mode:
        for action, payload in offline_commands(charger.ocpp_version, mode):
            state.offline_command = queue_command(
                charger=charger, actor=None, action=action, payload=payload
            )
        state.offline_mode = mode
    state.save()
    return state


def sync_local_lists(*, community: Community) -> int:
    """Sync every connected charger of the community (in its scope). Returns how many lists or
    configurations were queued."""
    chargers = list(
        Charger.objects.filter(
            community=community, connected=True, ocpp_version__in=OcppVersion.values
        )
    )
    if not chargers:
        return 0
    snapshot = build_snapshot(community.pk)
    modes = dict(OfflinePolicy.objects.values_list("site_id", "mode"))
    queued = 0
    for charger in chargers:
        state = sync_charger(charger, snapshot, modes.get(charger.site_id, OfflineMode.KNOWN))
        queued += state.pending_command is not None
    return queued
