"""`seed_demo` creates the documented demo data, and running it again changes nothing."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django_scopes import scope

from accounts.models import User
from billing.models import Price
from chargers.models import ChargeCard, Charger, ChargingSession, InventoryCharger, card_decision
from communities.models import AccessGrant, Community, InstallerMember, Membership, Role
from meters.models import Meter
from power.models import ChargerPower, SitePower
from rules.models import AccessPolicy, TimeWindow, UserGroup

pytestmark = pytest.mark.django_db


def counts():
    models = [
        User, Community, Membership, Charger, ChargeCard, ChargingSession, Price,
        InventoryCharger, AccessGrant, InstallerMember, SitePower, ChargerPower, Meter,
        UserGroup, AccessPolicy, TimeWindow,
    ]  # fmt: skip
    # A global command: count every community's rows (the scoped models' managers say so).
    return {
        m.__name__: getattr(m.objects, "with_scopes_disabled", lambda m=m: m.objects)().count()
        for m in models
    }


def test_seed_demo_is_the_documented_data_and_idempotent():
    call_command("seed_demo", stdout=None)
    first = counts()
    call_command("seed_demo", stdout=None)
    assert counts() == first

    demo = Community.objects.get(slug="demo")
    with scope(community=demo):
        assert demo.expense_email == "finance@demo.example"
        roles = dict(Membership.objects.filter(community=demo).values_list("user__phone", "role"))
        assert roles == {"+33600000001": Role.OWNER, "+33600000002": Role.INDIVIDUAL}
        assert User.objects.get(phone="+33600000002").email == "driver@demo.example"
        chargers = Charger.objects.filter(community=demo)
        assert sorted(c.identity for c in chargers) == [
            "DEMO-SPARK1-01",
            "DEMO-VOLTTIME-01",
            "DEMO-ZAPTEC-01",
        ]
        assert all(c.password_hash == "" for c in chargers)
        assert chargers.values("site").distinct().count() == 2
        price = Price.objects.get(community=demo)
        assert (price.price_per_kwh, str(price.valid_from)) == (Decimal("0.2516"), "2020-01-01")
        # The driver's card is accepted by the gateway's decision.
        assert card_decision(demo.pk, "DEMO-CARD-01")["status"] == "Accepted"
        # The installer side: a company with limited access and two unclaimed inventory chargers.
        assert AccessGrant.objects.get(community=demo).scope == AccessGrant.Scope.LIMITED
        assert InstallerMember.objects.get(user__phone="+33600000003").is_admin
        assert InventoryCharger.objects.filter(claimed_at__isnull=True).count() == 2
        # Power management on the warehouse: 3 × 32 A, balancing its two chargers, a meter.
        power = SitePower.objects.get(site__name="Entrepôt de Bercy")
        assert (power.phases, power.limit_a, power.load_balancing) == (3, 32, True)
        managed = ChargerPower.objects.filter(charger__site=power.site)
        assert sorted(managed.values_list("charger__identity", flat=True)) == [
            "DEMO-VOLTTIME-01",
            "DEMO-ZAPTEC-01",
        ]
        assert Meter.objects.get(site=power.site).role == Meter.Role.GRID
        # Rules of use: the headquarters open to all, Bercy reserved to a group on weekdays.
        group = UserGroup.objects.get(community=demo)
        assert [u.phone for u in group.members.all()] == ["+33600000002"]
        bercy = AccessPolicy.objects.get(site__name="Entrepôt de Bercy")
        assert bercy.mode == "chosen" and list(bercy.groups.all()) == [group]
        window = TimeWindow.objects.get(policy=bercy)
        assert (window.days, str(window.start), str(window.end)) == (
            "12345",
            "08:00:00",
            "19:00:00",
        )
        assert AccessPolicy.objects.get(site__name="Siège — parking").mode == "members"
