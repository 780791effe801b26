"""`rules.evaluation.evaluate`: every refusal reason, policies of sites and outlets, groups,
weekly windows in the community's time zone across both DST changes, monthly limits."""

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
import time_machine

from chargers.models import ChargingSession, card_decision
from rules import services
from rules.evaluation import build_snapshot, evaluate, in_windows
from rules.models import Mode, Reason
from tests import builders

pytestmark = pytest.mark.community_scope

PARIS = __import__("zoneinfo").ZoneInfo("Europe/Paris")


@pytest.fixture
def outlet(charger):
    return builders.make_connector(charger, connector_id=1)


@pytest.fixture
def card(community, individual):
    return builders.make_card(community, holder=individual, uid="04A23B11")


def decide(community, outlet, uid="04A23B11", at=None, evse_id="outlet"):
    at = at or datetime.now(UTC)
    return evaluate(
        build_snapshot(community.pk, at),
        charger_id=outlet.charger_id,
        evse_id=outlet.evse_id if evse_id == "outlet" else evse_id,
        card=card_decision(community.pk, uid),
        at=at,
    )


def test_without_rules_every_member_with_a_card_may_charge(community, outlet, card):
    assert decide(community, outlet).allowed
    assert decide(community, outlet, uid="FFFF").reason == Reason.UNKNOWN_CARD
    card.active = False
    card.save()
    assert decide(community, outlet).reason == Reason.CARD_BLOCKED


def test_chosen_users_and_groups(community, manager, outlet, card, individual, site):
    other = builders.make_member(community).user
    services.set_policy(
        community=community, actor=manager, mode=Mode.CHOSEN, site=site, users=[other]
    )
    refused = decide(community, outlet)
    assert refused.reason == Reason.NOT_ALLOWED
    assert refused.status("1.6") == "Blocked" and refused.status("2.0.1") == "NotAtThisLocation"
    group = services.save_group(
        community=community, actor=manager, name="Residents", members=[individual]
    )
    services.set_policy(
        community=community, actor=manager, mode=Mode.CHOSEN, site=site, groups=[group]
    )
    assert decide(community, outlet).allowed


def test_an_outlets_own_policy_wins_over_its_site(community, manager, outlet, card, site):
    services.set_policy(community=community, actor=manager, mode=Mode.NOBODY, site=site)
    assert decide(community, outlet).reason == Reason.OUT_OF_SERVICE
    services.set_policy(community=community, actor=manager, mode=Mode.MEMBERS, connector=outlet)
    assert decide(community, outlet).allowed
    other = builders.make_connector(outlet.charger, connector_id=2)
    assert decide(community, other).reason == Reason.OUT_OF_SERVICE
    # An Authorize names no outlet: allowed when one outlet of the charger allows the card.
    assert decide(community, outlet, evse_id=None).allowed


def test_free_charging_needs_no_known_card(community, manager, outlet, site):
    services.set_policy(community=community, actor=manager, mode=Mode.FREE, site=site)
    decision = decide(community, outlet, uid="WHOEVER")
    assert decision.allowed and decision.free


def test_expired_card(community, outlet, card):
    card.expires_on = datetime(2020, 1, 1).date()
    card.save()
    decision = decide(community, outlet)
    assert decision.reason == Reason.CARD_EXPIRED
    assert decision.status("1.6") == decision.status("2.0.1") == "Expired"


def _weekdays_8_to_19(community, manager, site):
    policy = services.set_policy(community=community, actor=manager, mode=Mode.MEMBERS, site=site)
    services.add_window(policy=policy, actor=manager, days="12345", start=time(8), end=time(19))
    return policy


@pytest.mark.parametrize(
    "utc,allowed",
    [
        # Winter (CET, UTC+1), Friday 27 March 2026.
        (datetime(2026, 3, 27, 6, 59, tzinfo=UTC), False),  # 07:59 local
        (datetime(2026, 3, 27, 7, 0, tzinfo=UTC), True),  # 08:00 local
        (datetime(2026, 3, 27, 17, 59, tzinfo=UTC), True),  # 18:59 local
        # Saturday and Sunday (the night of the change to summer time): closed.
        (datetime(2026, 3, 28, 10, 0, tzinfo=UTC), False),
        (datetime(2026, 3, 29, 10, 0, tzinfo=UTC), False),
        # Summer (CEST, UTC+2), Monday 30 March: 08:00 local is 06:00 UTC now.
        (datetime(2026, 3, 30, 5, 59, tzinfo=UTC), False),
        (datetime(2026, 3, 30, 6, 0, tzinfo=UTC), True),
        (datetime(2026, 3, 30, 16, 59, tzinfo=UTC), True),  # 18:59 local
        (datetime(2026, 3, 30, 17, 0, tzinfo=UTC), False),  # 19:00 local
        # Back to winter: Monday 26 October 2026, 08:00 local is 07:00 UTC again.
        (datetime(2026, 10, 26, 6, 30, tzinfo=UTC), False),
        (datetime(2026, 10, 26, 7, 0, tzinfo=UTC), True),
    ],
)
def test_weekly_window_follows_the_wall_clock_across_dst(
    community, manager, outlet, card, site, utc, allowed
):
    _weekdays_8_to_19(community, manager, site)
    with time_machine.travel(utc, tick=False):
        decision = decide(community, outlet, at=utc)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == Reason.OUTSIDE_HOURS
        assert decision.status("2.0.1") == "NotAtThisTime"


def test_a_window_past_midnight_across_the_dst_night():
    night = [["6", "22:00", "06:00"]]  # Saturday 22:00 → Sunday 06:00
    # 28→29 March 2026: the clocks jump from 02:00 to 03:00 in that night.
    assert in_windows(night, datetime(2026, 3, 28, 21, 30, tzinfo=UTC), PARIS)  # Sat 22:30
    assert in_windows(night, datetime(2026, 3, 29, 3, 30, tzinfo=UTC), PARIS)  # Sun 05:30 CEST
    assert not in_windows(night, datetime(2026, 3, 29, 4, 30, tzinfo=UTC), PARIS)  # 06:30
    assert not in_windows(night, datetime(2026, 3, 28, 20, 30, tzinfo=UTC), PARIS)  # Sat 21:30
    # 24→25 October: 02:00–03:00 happens twice; both are inside, 06:00 still ends it.
    night = [["6", "22:00", "06:00"]]
    assert in_windows(night, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), PARIS)  # 02:30 CEST
    assert in_windows(night, datetime(2026, 10, 25, 1, 30, tzinfo=UTC), PARIS)  # 02:30 CET
    assert not in_windows(night, datetime(2026, 10, 25, 5, 0, tzinfo=UTC), PARIS)  # 06:00 CET
    assert in_windows([["1234567", "00:00", "00:00"]], datetime.now(UTC), PARIS)  # all day


def test_monthly_limit_counts_the_month_in_the_community_time_zone(
    community, manager, outlet, card, individual, charger
):
    services.set_limit(
        community=community,
        actor=manager,
        user=individual,
        monthly_kwh=Decimal("10"),
        session_minutes=None,
    )
    ChargingSession.objects.create(
        community=community,
        charger=charger,
        transaction_id="a",
        holder=individual,
        state=ChargingSession.State.COMPLETED,
        started_at=datetime(2026, 4, 30, 22, 30, tzinfo=UTC),  # 1 May 00:30 in Paris
        energy_wh=Decimal("10000"),
    )
    april = datetime(2026, 4, 30, 21, 0, tzinfo=UTC)  # still April in Paris
    assert decide(community, outlet, at=april).allowed
    may = datetime(2026, 5, 2, 8, 0, tzinfo=UTC)
    refused = decide(community, outlet, at=may)
    assert refused.reason == Reason.MONTHLY_LIMIT
    assert refused.status("1.6") == "Blocked" and refused.status("2.0.1") == "NoCredit"
