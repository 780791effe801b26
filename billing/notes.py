"""What goes into an expense note, as plain data: a driver's completed sessions of a month, one
line per session, and the fingerprint that says whether an issued note still matches them.
Reads only, inside the community's scope; `issuing.generate_month` turns them into notes."""

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from accounts.models import User
from chargers.models import ChargingSession, outlet_number
from communities.models import Community, Membership
from sparklin.dates import month_bounds

CENT = Decimal("0.01")


# What a line prints, and nothing more, read as rows: a month is tens of thousands of sessions,
# and building a model instance (and its charger, site and outlet) for each was most of the
# month's issuing.
_LINE_FIELDS = (
    "pk",
    "holder_id",
    "started_at",
    "stopped_at",
    "energy_wh",
    "price_per_kwh",
    "cost",
    "free",
    "charger__name",
    "charger__identity",
    "charger__site__name",
    "connector__evse_id",
    "connector__connector_id",
)


def month_sessions(community: Community, year: int, month: int):
    """Completed sessions with a known driver that started in the month (community time zone),
    as rows of `_LINE_FIELDS`. Sessions of unknown cards (no holder) are in no note; sessions
    still in progress wait until they end, and then version the note of the month they started
    in. The holders are read once each, by `drivers_of_month` (not once per session: each
    would parse its phone number again)."""
    start, end = month_bounds(community, year, month)
    return (
        ChargingSession.objects.filter(
            community=community,
            started_at__gte=start,
            started_at__lt=end,
            state=ChargingSession.State.COMPLETED,
            holder__isnull=False,
        )
        .order_by("started_at", "pk")
        .values_list(*_LINE_FIELDS, named=True)
    )


def _outlet_label(row) -> str:
    charger = row.charger__name or row.charger__identity
    if row.connector__connector_id is None:
        return charger
    return f"{charger} #{outlet_number(row.connector__evse_id, row.connector__connector_id)}"


_TENTH = Decimal("0.1")


def session_line(row) -> dict:
    """One note line, JSON-ready, from a row of `month_sessions`. Times are UTC ISO 8601; the
    note prints them in its time zone."""
    return {
        "session": row.pk,
        "started_at": row.started_at.isoformat(),
        "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
        "site": row.charger__site__name,
        "outlet": _outlet_label(row),
        "energy_wh": str(row.energy_wh.quantize(_TENTH)),
        "price_per_kwh": None if row.price_per_kwh is None else str(row.price_per_kwh),
        "amount": str(row.cost.quantize(CENT)),
        # Free charging (rules of use): printed as free, amount 0, never billed.
        "free": row.free,
    }


# What makes a note different: the sessions and their figures, not the labels printed beside
# them (a renamed site does not call for a new version).
_FINGERPRINT_KEYS = ("session", "started_at", "stopped_at", "energy_wh", "price_per_kwh", "amount")


def fingerprint(lines: list[dict]) -> str:
    payload = [[line[k] for k in _FINGERPRINT_KEYS] for line in lines]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


@dataclass
class DriverMonth:
    holder: User
    lines: list[dict] = field(default_factory=list)

    @property
    def energy_wh(self) -> Decimal:
        return sum((Decimal(line["energy_wh"]) for line in self.lines), Decimal(0))

    @property
    def amount(self) -> Decimal:
        return sum((Decimal(line["amount"]) for line in self.lines), Decimal(0))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.lines)


def drivers_of_month(community: Community, year: int, month: int) -> dict[int, DriverMonth]:
    """holder id → their lines of the month, in two queries (the sessions, their holders)."""
    lines: dict[int, list[dict]] = {}
    for row in month_sessions(community, year, month).iterator(chunk_size=2000):
        lines.setdefault(row.holder_id, []).append(session_line(row))
    # Free charging is printed on a note beside paid sessions (as free, amount 0) but never
    # makes a note by itself: there is nothing to pay back.
    billed = [k for k, ls in lines.items() if any(not line["free"] for line in ls)]
    holders = User.objects.in_bulk(billed)
    return {k: DriverMonth(holder=holders[k], lines=lines[k]) for k in billed}


def holder_name(user: User) -> str:
    return user.get_full_name() or str(user.phone)


def finance_language(community: Community) -> str:
    """The language of the expense-note recipient: theirs when the address belongs to a member
    of the community, the site's default otherwise."""
    if community.expense_email:
        language = (
            User.objects.filter(
                Q(email__iexact=community.expense_email),
                memberships__in=Membership.objects.filter(community=community),
            )
            .values_list("language", flat=True)
            .first()
        )
        if language:
            return language
    return settings.LANGUAGE_CODE
