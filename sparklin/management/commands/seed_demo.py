"""`python manage.py seed_demo`: the documented demo data, created or brought back to the
documented state (idempotent: running it twice changes nothing).

Community `demo` with two sites; chargers DEMO-SPARK1-01 and DEMO-ZAPTEC-01 (OCPP 1.6J) and
DEMO-VOLTTIME-01 (OCPP 2.0.1), no password; owner (and manager) +33600000001; driver +33600000002
(driver@demo.example) holding card DEMO-CARD-01; 0.2516 EUR/kWh since 2020-01-01; expense-note
recipient finance@demo.example; and a few completed sessions last month so pages are not empty.
Installers: company "Demo Électricité" whose admin is +33600000003; it installed DEMO-SPARK1-01
and keeps limited access to `demo`; the charger inventory holds DEMO-INV-0001 and
DEMO-INV-0002 (PIN 1234), unclaimed, to try commissioning by serial number and PIN.
Power management: "Entrepôt de Bercy" (DEMO-ZAPTEC-01, DEMO-VOLTTIME-01) is a three-phase 32 A
grid connection with dynamic load balancing (2 A margin) and the demo grid meter.
Rules of use: DEMO-SPARK1-01 (headquarters) open to every member; the Bercy outlets
(DEMO-ZAPTEC-01, DEMO-VOLTTIME-01) reserved to the group "Équipe Bercy" (the driver) on weekdays
08:00–19:00, Paris time.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django_scopes import scopes_disabled

from accounts.models import User
from billing.models import Price
from billing.prices import price_at, session_cost
from chargers.inventory import import_inventory
from chargers.models import (
    ChargeCard,
    Charger,
    ChargingSession,
    Connector,
    InventoryCharger,
    MeterSample,
    Vendor,
    normalize_card_uid,
)
from chargers.stamps import changed
from communities.models import (
    AccessGrant,
    Community,
    InstallerCompany,
    InstallerMember,
    Membership,
    Role,
    Site,
)
from meters.demo import ensure_demo_meter
from power.models import ChargerPower, SitePower
from rules.models import AccessPolicy, Mode, TimeWindow, UserGroup

MANAGER_PHONE = "+33600000001"
DRIVER_PHONE = "+33600000002"
INSTALLER_PHONE = "+33600000003"
INVENTORY = [
    {"serial": "DEMO-INV-0001", "pin": "1234", "vendor": "spark1", "model": "Spark 1"},
    {"serial": "DEMO-INV-0002", "pin": "1234", "vendor": "spark1", "model": "Spark 1"},
]
CHARGERS = [
    # identity, vendor, model, site index, protocol the simulator speaks
    ("DEMO-SPARK1-01", Vendor.SPARK1, "Spark 1", 0, "1.6"),
    ("DEMO-ZAPTEC-01", Vendor.ZAPTEC, "Zaptec Go", 1, "1.6"),
    ("DEMO-VOLTTIME-01", Vendor.VOLTTIME, "Volt Time Source", 1, "2.0.1"),
]


class Command(BaseCommand):
    help = "Create (or restore) the documented demo community, people, chargers and card."

    @transaction.atomic
    @scopes_disabled()
    def handle(self, *args, **options):
        community, _ = Community.objects.update_or_create(
            slug="demo",
            defaults={
                "name": "Sparklin Demo",
                "kind": Community.Kind.COMPANY,
                "address": "12 rue des Électrons\n75011 Paris",
                "time_zone": "Europe/Paris",
                "expense_email": "finance@demo.example",
            },
        )
        sites = [
            Site.objects.update_or_create(
                community=community, name=name, defaults={"address": address}
            )[0]
            for name, address in [
                ("Siège — parking", "12 rue des Électrons, 75011 Paris"),
                ("Entrepôt de Bercy", "40 quai de Bercy, 75012 Paris"),
            ]
        ]
        manager = self._person(MANAGER_PHONE, "Camille", "Martin", "manager@demo.example")
        driver = self._person(DRIVER_PHONE, "Lucas", "Bernard", "driver@demo.example")
        # The documented manager is the demo community's owner: every page is reachable with
        # one login, the owner's pages (installer access, ownership) included.
        for user, role in [(manager, Role.OWNER), (driver, Role.INDIVIDUAL)]:
            Membership.objects.update_or_create(
                community=community,
                user=user,
                defaults={"role": role, "state": Membership.State.ACTIVE, "left_at": None},
            )
        Price.objects.update_or_create(
            community=community,
            valid_from=date(2020, 1, 1),
            defaults={"price_per_kwh": Decimal("0.2516")},
        )
        card, _ = ChargeCard.objects.update_or_create(
            community=community,
            uid=normalize_card_uid("DEMO-CARD-01"),  # stored as DEMOCARD01, the one spelling
            defaults={"name": "Badge Lucas", "holder": driver, "active": True, "expires_on": None},
        )
        chargers = []
        for identity, vendor, model, site_index, _protocol in CHARGERS:
            charger, _ = Charger.objects.update_or_create(
                identity=identity,
                defaults={
                    "community": community,
                    "site": sites[site_index],
                    "vendor": vendor,
                    "model": model,
                    "password_hash": "",
                },
            )
            chargers.append(charger)
        self._history(community, chargers[0], driver, card)
        self._power(sites[1], [c for c in chargers if c.site_id == sites[1].pk])
        self._installer(community, chargers[0])
        self._rules(community, sites, driver)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: community 'demo', owner and manager {MANAGER_PHONE}, driver {DRIVER_PHONE}, "
                f"installer {INSTALLER_PHONE}, chargers {', '.join(c[0] for c in CHARGERS)}."
            )
        )

    def _power(self, site, chargers):
        """Dynamic load balancing on the warehouse: 3 × 32 A, its chargers three-phase 6–32 A,
        and the demo grid meter (a building load that moves during the day)."""
        SitePower.objects.update_or_create(
            site=site,
            defaults={
                "community": site.community,
                "phases": SitePower.Phases.THREE,
                "voltage_v": 230,
                "limit_a": Decimal("32"),
                "margin_a": Decimal("2"),
                "load_balancing": True,
                "solar": False,
                "solar_minimum": False,
                "peak_shaving": False,
            },
        )
        for charger in chargers:
            ChargerPower.objects.update_or_create(
                charger=charger,
                defaults={
                    "community": site.community,
                    "wiring": "l1l2l3",
                    "min_a": Decimal("6"),
                    "max_a": Decimal("32"),
                    "circuit": None,
                },
            )
        ensure_demo_meter(site)

    def _installer(self, community, installed):
        """An installer company that commissioned the first demo charger and, the hand-over
        being long past, keeps limited access; plus two unclaimed inventory chargers."""
        company, _ = InstallerCompany.objects.get_or_create(name="Demo Électricité")
        installer = self._person(INSTALLER_PHONE, "Inès", "Moreau", "installer@demo.example")
        InstallerMember.objects.update_or_create(
            company=company, user=installer, defaults={"is_admin": True}
        )
        if community.installer_id != company.pk:
            # Installed and handed over to the manager on the day the demo's price starts.
            community.installer = company
            community.handed_over_at = datetime(2020, 1, 1, 9, tzinfo=community.tz)
            community.save(update_fields=["installer", "handed_over_at"])
        if installed.installer_id != company.pk:
            installed.installer = company
            installed.save(update_fields=["installer"])
        if not AccessGrant.objects.filter(
            community=community, company=company, revoked_at=None
        ).exists():
            AccessGrant.objects.create(
                community=community, company=company, scope=AccessGrant.Scope.LIMITED
            )
        claimed = set(
            InventoryCharger.objects.filter(claimed_at__isnull=False).values_list(
                "serial", flat=True
            )
        )
        import_inventory([row for row in INVENTORY if row["serial"] not in claimed])

    def _rules(self, community, sites, driver):
        """Rules of use: the headquarters (DEMO-SPARK1-01) open to every member; the Bercy
        outlets reserved to the group "Équipe Bercy" (the driver) on weekdays 08:00–19:00."""
        group, _ = UserGroup.objects.get_or_create(community=community, name="Équipe Bercy")
        group.members.set([driver])
        AccessPolicy.objects.update_or_create(
            community=community, site=sites[0], connector=None, defaults={"mode": Mode.MEMBERS}
        )
        bercy, _ = AccessPolicy.objects.update_or_create(
            community=community, site=sites[1], connector=None, defaults={"mode": Mode.CHOSEN}
        )
        bercy.users.clear()
        bercy.groups.set([group])
        TimeWindow.objects.filter(policy=bercy).exclude(days="12345").delete()
        TimeWindow.objects.update_or_create(
            community=community,
            policy=bercy,
            days="12345",
            defaults={"start": time(8), "end": time(19)},
        )
        changed(community_id=community.pk)

    def _person(self, phone, first, last, email):
        user = User.objects.filter(phone=phone).first()
        if user is None:
            user = User.objects.create_user(phone=phone)
        user.first_name, user.last_name, user.email = first, last, email
        user.save()
        return user

    def _history(self, community, charger, driver, card):
        """A handful of completed sessions in the previous month (fixed transaction ids, so a
        second run finds them instead of adding more)."""
        connector, _ = Connector.objects.get_or_create(
            community=community, charger=charger, evse_id=1, connector_id=1
        )
        first_of_month = date.today().replace(day=1)
        last_month = (first_of_month - timedelta(days=1)).replace(day=1)
        for n, (day, hour, minutes, kwh) in enumerate(
            [
                (3, 18, 125, "11.240"),
                (9, 19, 240, "21.870"),
                (15, 7, 95, "8.115"),
                (21, 20, 180, "16.502"),
                (26, 18, 60, "5.930"),
            ],
            start=1,
        ):
            started = datetime.combine(last_month.replace(day=day), time(hour), community.tz)
            energy_wh = Decimal(kwh) * 1000
            price = price_at(community, started)
            cost = session_cost(energy_wh, price)
            meter_start = Decimal(100000 * n)
            session = ChargingSession.objects.update_or_create(
                charger=charger,
                transaction_id=f"demo-{last_month:%Y%m}-{n}",
                defaults={
                    "community": community,
                    "connector": connector,
                    "holder": driver,
                    "card": card,
                    "id_tag": card.uid,
                    "state": ChargingSession.State.COMPLETED,
                    "started_at": started,
                    "stopped_at": started + timedelta(minutes=minutes),
                    "meter_start_wh": meter_start,
                    "meter_stop_wh": meter_start + energy_wh,
                    "meter_last_wh": meter_start + energy_wh,
                    "energy_wh": energy_wh,
                    "price_per_kwh": price,
                    "cost": cost,
                    "stop_reason": "Local",
                },
            )[0]
            self._curve(session, started, minutes, meter_start, energy_wh)

    def _curve(self, session, started, minutes, meter_start, energy_wh):
        """Meter values every 5 minutes (energy register and power), so the session page draws
        a curve: full power, then tapering over the last fifth, as a car's battery fills."""
        steps = max(minutes // 5, 1)
        taper = max(steps // 5, 1)
        weights = [1.0 if k < steps - taper else (steps - k) / (taper + 1) for k in range(steps)]
        per_weight = float(energy_wh) / sum(weights)
        samples, register = [], float(meter_start)
        for k, weight in enumerate(weights):
            at = started + timedelta(minutes=5 * (k + 1))
            register += per_weight * weight
            power_w = per_weight * weight * 12  # Wh in 5 minutes → W
            for measurand, value, unit in [
                ("Energy.Active.Import.Register", register, "Wh"),
                ("Power.Active.Import", power_w, "W"),
            ]:
                samples.append(
                    MeterSample(
                        community=session.community, session=session, timestamp=at,
                        measurand=measurand, value=Decimal(f"{value:.3f}"), unit=unit,
                    )
                )  # fmt: skip
        MeterSample.objects.bulk_create(samples, ignore_conflicts=True)
