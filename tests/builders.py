"""Plain builder functions for tests: `make_x(**overrides)` returns a saved object.

Tests run with scopes disabled (see conftest), so builders can create tenant rows directly."""

import itertools
from decimal import Decimal

from django.contrib.auth.hashers import make_password

from accounts.models import User
from billing.models import Price
from chargers.models import ChargeCard, Charger, Connector, Vendor
from communities.models import Community, Membership, Role, Site

_seq = itertools.count(1)


def make_user(**overrides) -> User:
    n = next(_seq)
    fields = {"phone": f"+3361{n:07d}", "first_name": f"First{n}", "last_name": f"Last{n}"}
    fields.update(overrides)
    return User.objects.create_user(**fields)


def make_community(**overrides) -> Community:
    n = next(_seq)
    fields = {"name": f"Community {n}", "slug": f"community-{n}"}
    fields.update(overrides)
    return Community.objects.create(**fields)


def make_member(community, role=Role.INDIVIDUAL, user=None, **overrides) -> Membership:
    user = user or make_user()
    return Membership.objects.create(community=community, user=user, role=role, **overrides)


def make_site(community, **overrides) -> Site:
    n = next(_seq)
    fields = {"name": f"Site {n}", "address": f"{n} rue de la Paix"}
    fields.update(overrides)
    return Site.objects.create(community=community, **fields)


def make_charger(community, site=None, password=None, **overrides) -> Charger:
    n = next(_seq)
    site = site or make_site(community)
    fields = {"identity": f"CHARGER-{n:04d}", "vendor": Vendor.OTHER}
    fields.update(overrides)
    if password:
        fields["password_hash"] = make_password(password)
    return Charger.objects.create(community=community, site=site, **fields)


def make_connector(charger, connector_id=1, evse_id=None, **overrides) -> Connector:
    return Connector.objects.create(
        community=charger.community,
        charger=charger,
        connector_id=connector_id,
        evse_id=evse_id if evse_id is not None else connector_id,
        **overrides,
    )


def make_card(community, holder=None, **overrides) -> ChargeCard:
    n = next(_seq)
    fields = {"uid": f"CARD{n:06d}", "name": f"Card {n}"}
    fields.update(overrides)
    return ChargeCard.objects.create(community=community, holder=holder, **fields)


def make_price(community, price="0.2516", valid_from="2020-01-01") -> Price:
    return Price.objects.create(
        community=community, price_per_kwh=Decimal(price), valid_from=valid_from
    )


def make_company(name=None, **overrides):
    from communities.models import InstallerCompany

    n = next(_seq)
    return InstallerCompany.objects.create(name=name or f"Installer {n}", **overrides)


def make_installer(company=None, user=None, is_admin=False):
    """A user in an installer company (created when not given); returns the user."""
    from communities.models import InstallerMember

    company = company or make_company()
    user = user or make_user()
    InstallerMember.objects.create(company=company, user=user, is_admin=is_admin)
    return user


def make_grant(community, company, scope="full", **overrides):
    from communities.models import AccessGrant

    return AccessGrant.objects.create(
        community=community, company=company, scope=scope, **overrides
    )


def community_of(user) -> Community:
    """The community of a person with one membership (e.g. the `outsider` fixture's)."""
    return Community.objects.get(memberships__user=user)


def make_meter(site, **overrides):
    from meters.models import Meter

    n = next(_seq)
    fields = {"name": f"Meter {n}", "kind": Meter.Kind.MQTT, "role": Meter.Role.GRID}
    fields.update(overrides)
    return Meter.objects.create(community=site.community, site=site, **fields)
