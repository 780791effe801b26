"""Portal-side charger and card services."""

import pytest
from django_scopes import scope

from chargers import services
from chargers.models import ChargeCard
from tests import builders

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


def test_add_card_normalises_uid(community, individual, manager):
    card = services.add_card(
        community=community, actor=manager, holder=individual, uid=" 04 a2:3b ", name="Badge"
    )
    assert card.uid == "04A23B"


def test_add_card_to_non_member_refused(community, manager, outsider):
    with pytest.raises(services.ChargerError):
        services.add_card(community=community, actor=manager, holder=outsider, uid="AB")


def test_add_card_to_member_who_left_refused(community, manager):
    left = builders.make_member(community, state="left").user
    with pytest.raises(services.ChargerError):
        services.add_card(community=community, actor=manager, holder=left, uid="AB")


def test_same_uid_in_two_communities_is_allowed(community, manager, individual, outsider):
    other = builders.community_of(outsider)
    services.add_card(community=community, actor=manager, holder=individual, uid="CAFE")
    assert ChargeCard.objects.filter(uid="CAFE").count() == 1
    with scope(community=other):
        services.add_card(community=other, actor=outsider, holder=outsider, uid="CAFE")
        assert ChargeCard.objects.filter(uid="CAFE").count() == 1


def test_update_charger_refuses_foreign_site(community, manager, outsider):
    charger = builders.make_charger(community)
    foreign_site = builders.make_site(builders.community_of(outsider))
    with pytest.raises(services.ChargerError):
        services.update_charger(charger=charger, actor=manager, site=foreign_site, vendor="other")


def test_register_charger_without_password(site, manager):
    charger = services.register_charger(
        site=site, actor=manager, identity="NOPW-1", vendor="spark1"
    )
    assert charger.password_hash == ""
