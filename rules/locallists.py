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
   `AuthCtrlr.OfflineTxForUnknownIdEnabled`, `AuthCtrlr.LocalPreAuthorize`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from chargers.models import Charger, ChargerCommand, OcppVersion
from chargers.services import ChargerError, queue_command
from communities.models import Community

from .evaluation import build_snapshot, local_entries
from .models import LocalList, OfflineMode, OfflinePolicy

# 2.0.1 needs a token type in a list entry; stored UIDs have none (one card whatever its type),
# and RFID cards, the ones lists are for, are ISO 14443.
TOKEN_TYPE = "ISO14443"
MAX_ENTRIES = 5000  # beyond this the list is cut (chargers cap theirs far lower)


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


def _settle(state: LocalList) -> bool:
    """Take the outcome of the list being sent into account; False while it is on its way."""
    command = state.pending_command
    if command is None:
        return True
    if command.status in (ChargerCommand.Status.PENDING, ChargerCommand.Status.SENT):
        return False
    answer = (command.response or {}).get("status") if isinstance(command.response, dict) else ""
    if command.status == ChargerCommand.Status.ACCEPTED:
        state.version, state.entries = state.pending_version, state.pending_entries
        state.supported, state.synced_at, state.last_error = True, timezone.now(), ""
    elif answer == "NotSupported":
        state.supported, state.last_error = False, "NotSupported"
    elif answer in ("VersionMismatch", "Failed"):
        state.version, state.entries, state.last_error = 0, {}, answer  # next one in full
    else:
        state.last_error = command.status  # no answer: sent again
    state.pending_command, state.pending_version, state.pending_entries = None, 0, {}
    return True


@transaction.atomic
def sync_charger(charger: Charger, snapshot: dict[str, Any], mode: str) -> LocalList:
    """Bring one charger's list and offline behaviour in line (see the module docstring)."""
    state, _created = LocalList.objects.select_for_update().get_or_create(
        charger=charger, defaults={"community_id": charger.community_id}
    )
    if not _settle(state) or state.supported is False:
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
