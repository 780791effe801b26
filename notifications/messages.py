"""What each kind of notification says: one function per kind, building a `Message` (subject,
lines, a link, the SMS text) from the rows told together, in the recipient's language and the
installation's time zone. `sending.deliver` renders every e-mail through one text/html template
pair (`notifications/email/notice.*`): the kinds differ by their words, not their layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, override

from accounts.models import User
from communities.models import Community
from rules.models import Reason
from sparklin.formatting import kwh, money

from .models import Kind, Notification

# A digest lists this many facts, then says how many more.
MAX_ITEMS = 10


@dataclass
class Message:
    subject: str
    intro: str
    items: list[str] = field(default_factory=list)
    more: int = 0
    url: str = ""
    link: str = ""
    sms: str = ""


def _when(value: str | None, community: Community, time_only: bool = False) -> str:
    at: datetime | None = parse_datetime(value) if value else None
    if at is None:
        return "—"
    local = timezone.localtime(at, community.tz)
    return formats.date_format(local, "TIME_FORMAT" if time_only else "SHORT_DATETIME_FORMAT")


def _url(name: str, community: Community, **kwargs: Any) -> str:
    return settings.SITE_URL + reverse(name, kwargs={"community": community.slug, **kwargs})


def _reason(code: str) -> str:
    return str(Reason(code).label) if code in Reason.values else code


def _items(lines: list[str]) -> tuple[list[str], int]:
    return lines[-MAX_ITEMS:], max(0, len(lines) - MAX_ITEMS)


def access_request_message(rows: Sequence[Notification], community: Community) -> Message:
    n = len(rows)
    first = rows[0].data
    url = _url("communities:access-request-list", community)
    lines = [
        f"{r.data.get('name')}" + (f" — « {r.data['message']} »" if r.data.get("message") else "")
        for r in rows
    ]
    items, more = _items(lines)
    values = {"community": community.name, "name": first.get("name"), "count": n, "url": url}
    if n == 1:
        subject = _("%(community)s: %(name)s asks for access") % values
        intro = _("%(name)s asks to charge at %(community)s.") % values
        sms = _("Sparklin: %(name)s asks for access to %(community)s. %(url)s") % values
    else:
        subject = _("%(community)s: %(count)d access requests") % values
        intro = _("%(count)d people ask to charge at %(community)s:") % values
        sms = _("Sparklin: %(count)d access requests for %(community)s. %(url)s") % values
    return Message(subject, intro, items, more, url, _("Answer the requests"), sms)


def refused_message(rows: Sequence[Notification], community: Community) -> Message:
    n = len(rows)
    url = _url("rules:rules-page", community)
    lines = []
    for r in rows:
        d = r.data
        who = d.get("holder") or d.get("uid") or _("a card")
        where = d.get("charger") or _("a charger")
        if d.get("evse_id"):
            where = _("%(charger)s, outlet %(outlet)s") % {"charger": where, "outlet": d["evse_id"]}
        line = _("%(time)s — %(where)s: %(who)s, %(reason)s") % {
            "time": _when(d.get("at"), community),
            "where": where,
            "who": who,
            "reason": _reason(d.get("reason", "")),
        }
        if d.get("event") == "offline":
            line += " " + _("(started while the charger was offline: recorded, not refused)")
        lines.append(line)
    items, more = _items(lines)
    first = rows[0].data
    values = {
        "community": community.name,
        "count": n,
        "charger": first.get("charger") or _("a charger"),
        "reason": _reason(first.get("reason", "")),
        "url": url,
    }
    if n == 1:
        subject = _("%(community)s: a charge was refused (%(reason)s)") % values
        intro = _("A rule of use you set refused a charge:")
        sms = _("Sparklin %(community)s: charge refused at %(charger)s (%(reason)s). %(url)s")
    else:
        subject = _("%(community)s: %(count)d charges refused by your rules") % values
        intro = ngettext(
            "The rules of use refused %(count)d charge:",
            "The rules of use refused %(count)d charges:",
            n,
        )
        sms = _("Sparklin %(community)s: %(count)d charges refused by your rules. %(url)s")
    return Message(subject, intro % values, items, more, url, _("See the rules"), sms % values)


def charger_offline_message(rows: Sequence[Notification], community: Community) -> Message:
    offline = [r for r in rows if r.data.get("event") != "online"]
    online = [r for r in rows if r.data.get("event") == "online"]
    lines = [
        _("%(charger)s (%(site)s): not connected since %(since)s")
        % {
            "charger": r.data.get("charger"),
            "site": r.data.get("site"),
            "since": _when(r.data.get("since"), community),
        }
        for r in offline
    ] + [
        _("%(charger)s (%(site)s): back online at %(back)s (offline since %(since)s)")
        % {
            "charger": r.data.get("charger"),
            "site": r.data.get("site"),
            "back": _when(r.data.get("back_at"), community),
            "since": _when(r.data.get("since"), community),
        }
        for r in online
    ]
    items, more = _items(lines)
    chargers = {r.data.get("charger_id") for r in rows}
    if len(chargers) == 1 and rows[0].data.get("charger_id"):
        url = _url("chargers:charger-detail", community, charger=rows[0].data["charger_id"])
    else:
        url = _url("chargers:outlet-list", community)
    first = rows[-1].data
    values = {
        "community": community.name,
        "charger": first.get("charger"),
        "count": len(offline),
        "minutes": first.get("minutes") or settings.NOTIFY_OFFLINE_MINUTES,
        "url": url,
    }
    if len(rows) == 1 and online:
        subject = _("%(community)s: %(charger)s is back online") % values
        intro = _("A charger that was offline is connected again:")
        sms = _("Sparklin %(community)s: %(charger)s is back online.") % values
    elif len(rows) == 1:
        subject = _("%(community)s: %(charger)s is offline") % values
        intro = (
            ngettext(
                "A charger has not been connected for more than %(minutes)d minute:",
                "A charger has not been connected for more than %(minutes)d minutes:",
                values["minutes"],
            )
            % values
        )
        sms = _("Sparklin %(community)s: %(charger)s is offline. %(url)s") % values
    else:
        subject = (
            ngettext(
                "%(community)s: %(count)d charger offline",
                "%(community)s: %(count)d chargers offline",
                len(offline),
            )
            % values
        )
        intro = _("Chargers of %(community)s lost or regained their connection:") % values
        sms = (
            ngettext(
                "Sparklin %(community)s: %(count)d charger offline. %(url)s",
                "Sparklin %(community)s: %(count)d chargers offline. %(url)s",
                len(offline),
            )
            % values
        )
    return Message(subject, intro, items, more, url, _("See the chargers"), sms)


def _energy(data: dict[str, Any]) -> str:
    try:
        return kwh(Decimal(str(data.get("energy_wh") or 0)))
    except InvalidOperation:
        return "—"


def session_ended_message(rows: Sequence[Notification], community: Community) -> Message:
    url = _url("chargers:my-session-list", community)
    lines = []
    for r in rows:
        d = r.data
        values = {
            "charger": d.get("outlet") or d.get("charger"),
            "start": _when(d.get("started"), community),
            "stop": _when(d.get("stopped"), community, time_only=True),
            "energy": _energy(d),
        }
        line = _("%(charger)s: %(start)s – %(stop)s, %(energy)s kWh") % values
        if d.get("cost") is not None:
            line += ", " + money(d["cost"], d.get("currency") or community.currency)
        lines.append(line)
    items, more = _items(lines)
    first = rows[0].data
    values = {
        "community": community.name,
        "count": len(rows),
        "charger": first.get("charger"),
        "energy": _energy(first),
    }
    if len(rows) == 1:
        subject = _("Your charging session at %(community)s ended") % values
        intro = _("Your charging session ended:")
        sms = _("Sparklin: your session at %(charger)s ended, %(energy)s kWh.") % values
    else:
        subject = _("Your %(count)d charging sessions at %(community)s ended") % values
        intro = _("Your charging sessions ended:")
        sms = _("Sparklin: %(count)d of your sessions at %(community)s ended.") % values
    return Message(subject, intro, items, more, url, _("See my sessions"), sms)


def session_stopped_message(rows: Sequence[Notification], community: Community) -> Message:
    url = _url("chargers:my-session-list", community)
    lines = [
        _("%(time)s — %(charger)s: %(reason)s")
        % {
            "time": _when(r.data.get("at"), community),
            "charger": r.data.get("charger") or _("a charger"),
            "reason": _reason(r.data.get("reason", "")),
        }
        for r in rows
    ]
    items, more = _items(lines)
    first = rows[0].data
    values = {
        "community": community.name,
        "charger": first.get("charger") or _("a charger"),
        "reason": _reason(first.get("reason", "")),
    }
    subject = _("Your charging session was stopped: %(reason)s") % values
    intro = _("A rule of use of %(community)s stopped your charging session:") % values
    sms = _("Sparklin: your session at %(charger)s was stopped (%(reason)s).") % values
    return Message(subject, intro, items, more, url, _("See my sessions"), sms)


BUILDERS: dict[str, Callable[[Sequence[Notification], Community], Message]] = {
    Kind.ACCESS_REQUEST: access_request_message,
    Kind.REFUSED: refused_message,
    Kind.CHARGER_OFFLINE: charger_offline_message,
    Kind.SESSION_ENDED: session_ended_message,
    Kind.SESSION_STOPPED: session_stopped_message,
}


def build(rows: Sequence[Notification], recipient: User, community: Community) -> Message:
    """The message telling `recipient` the facts of `rows` (one kind), in their language."""
    with override(recipient.language):
        return BUILDERS[rows[0].kind](rows, community)
