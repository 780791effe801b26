"""Charge cards: one spelling per UID, uniqueness on it (the migration that merged old
duplicates), expiry, deactivation and reactivation, a card freed by an account deletion,
the manager's card table (expiry, last use)."""

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils.translation import override
from django_scopes import scope

from accounts.privacy import delete_account
from chargers import services
from chargers.models import (
    AccessStamp,
    AuthorizationStatus,
    ChargeCard,
    ChargingSession,
    card_decision,
    normalize_card_uid,
)
from communities.models import AuditEvent
from tests import builders


@pytest.mark.parametrize(
    "typed",
    ["04:A2:3B:11", "04-a2-3b-11", " 04 a2 3b 11 ", "04a23B11", "04:a2 3b-11", "04\ta2\n3b11"],
)
def test_every_spelling_of_a_uid_is_one_card(typed):
    assert normalize_card_uid(typed) == "04A23B11"
    assert normalize_card_uid("DEMO-CARD-01") == normalize_card_uid("democard01") == "DEMOCARD01"


@pytest.mark.django_db
def test_a_card_is_stored_in_its_one_spelling_and_found_by_any(community, individual):
    card = builders.make_card(community, holder=individual, uid="demo-card-01")
    assert card.uid == "DEMOCARD01"
    for presented in ("DEMOCARD01", "DEMO-CARD-01", "demo card 01"):
        assert card_decision(community.pk, presented)["card_id"] == card.pk


@pytest.mark.django_db
def test_the_database_refuses_a_uid_not_in_its_normal_form(community):
    # bulk_create skips save(): the check constraint still holds the line.
    with pytest.raises(IntegrityError), transaction.atomic():
        ChargeCard.objects.bulk_create([ChargeCard(community=community, uid="04:a2")])


@pytest.mark.community_scope
def test_the_same_card_typed_twice_is_refused_with_its_holder(community, manager, individual):
    services.add_card(community=community, actor=manager, holder=individual, uid="DEMO-CARD-01")
    with pytest.raises(services.ChargerError) as refused:
        services.add_card(community=community, actor=manager, holder=manager, uid="democard01")
    assert individual.get_full_name() in refused.value.message
    assert ChargeCard.objects.count() == 1


@pytest.mark.community_scope
def test_a_deactivated_card_is_reactivated_not_registered_again(community, manager, individual):
    card = services.add_card(community=community, actor=manager, holder=individual, uid="CAFE01")
    version = AccessStamp.objects.get(community=community).version
    services.deactivate_card(card=card, actor=manager)
    assert card_decision(community.pk, "CAFE01")["status"] == AuthorizationStatus.BLOCKED
    with override("en"), pytest.raises(services.ChargerError, match="reactivate it instead"):
        services.add_card(community=community, actor=manager, holder=individual, uid="CAFE01")
    services.reactivate_card(card=card, actor=manager)
    assert card_decision(community.pk, "CAFE01")["status"] == AuthorizationStatus.ACCEPTED
    # Every change moved the stamp the gateways watch.
    assert AccessStamp.objects.get(community=community).version == version + 2
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"card.add", "card.deactivate", "card.reactivate"} <= actions


@pytest.mark.community_scope
def test_a_card_of_someone_who_left_cannot_be_reactivated(community, manager, individual):
    card = services.add_card(community=community, actor=manager, holder=individual, uid="CAFE02")
    services.deactivate_card(card=card, actor=manager)
    individual.memberships.update(state="left")
    with pytest.raises(services.ChargerError):
        services.reactivate_card(card=card, actor=manager)


@pytest.mark.django_db
def test_a_card_freed_by_an_account_deletion_can_be_registered_again(
    community, manager, individual, charger
):
    with scope(community=community):
        card = services.add_card(
            community=community, actor=manager, holder=individual, uid="BEEF01", name="Old"
        )
        ChargingSession.objects.create(
            community=community, charger=charger, transaction_id="1", holder=individual, card=card
        )
    delete_account(user=individual)
    newcomer = builders.make_member(community).user
    with scope(community=community):
        again = services.add_card(
            community=community, actor=manager, holder=newcomer, uid="beef-01", name="New"
        )
        assert again.pk == card.pk and again.holder == newcomer and again.active
        assert again.name == "New"
        # The deleted person's session stays without card: nothing of theirs moves to the newcomer.
        assert ChargingSession.objects.get().card is None
    assert card_decision(community.pk, "BEEF01")["holder_id"] == newcomer.pk


@pytest.mark.django_db
def test_a_card_past_its_expiry_date_is_expired_in_the_community_time_zone(community, individual):
    card = builders.make_card(
        community, holder=individual, uid="EXP1", expires_on=date(2026, 3, 31)
    )
    # 23:30 UTC on 31 March is already 1 April in Paris: expired there.
    with time_machine.travel(datetime(2026, 3, 31, 21, 30, tzinfo=UTC)):
        assert card_decision(community.pk, "EXP1")["status"] == AuthorizationStatus.ACCEPTED
    with time_machine.travel(datetime(2026, 3, 31, 22, 30, tzinfo=UTC)):
        assert card_decision(community.pk, "EXP1")["status"] == AuthorizationStatus.EXPIRED
    card.expires_on = None
    card.save()
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC)):
        assert card_decision(community.pk, "EXP1")["status"] == AuthorizationStatus.ACCEPTED


@pytest.mark.community_scope
def test_manager_edits_a_card_and_sees_its_last_use(manager_client, community, individual, charger):
    card = builders.make_card(community, holder=individual, uid="04A1", name="Badge")
    ChargingSession.objects.create(
        community=community,
        charger=charger,
        transaction_id="7",
        holder=individual,
        card=card,
        started_at=datetime(2026, 2, 3, 8, 15, tzinfo=UTC),
    )
    m = individual.memberships.get()
    page = manager_client.get(f"/c/tilleuls/users/{m.pk}/").content.decode()
    assert "03/02/2026 09:15" in page  # last use, in the community's time
    response = manager_client.post(
        f"/c/tilleuls/cards/{card.pk}/edit/", {"name": "Garage", "expires_on": "2027-06-30"}
    )
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.name == "Garage" and card.expires_on == date(2027, 6, 30)
    manager_client.post(f"/c/tilleuls/cards/{card.pk}/deactivate/")
    manager_client.post(f"/c/tilleuls/cards/{card.pk}/reactivate/")
    card.refresh_from_db()
    assert card.active
    refused = manager_client.post(f"/c/tilleuls/cards/{card.pk}/edit/", {"expires_on": "soon"})
    assert refused.status_code == 200 and "expires_on" in refused.context["form"].errors


@pytest.mark.community_scope
def test_a_uid_too_long_once_normalised_is_refused_by_the_form(manager_client, individual):
    m = individual.memberships.get()
    manager_client.post(f"/c/tilleuls/users/{m.pk}/cards/add/", {"uid": "AB" * 19})
    assert not ChargeCard.objects.with_scopes_disabled().exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_normalises_and_merges_duplicate_cards():
    executor = MigrationExecutor(connection)
    # Sites as they were then too (power management later moved their grid limit).
    before = [("chargers", "0006_transaction_start"), ("communities", "0002_installers")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Community = old.get_model("communities", "Community")
    Card = old.get_model("chargers", "ChargeCard")
    Site = old.get_model("communities", "Site")
    Charger = old.get_model("chargers", "Charger")
    Session = old.get_model("chargers", "ChargingSession")
    community = Community.objects.create(name="Old", slug="old")
    driver = builders.make_user()  # accounts is not rolled back: today's model
    kept = Card.objects.create(community=community, uid="DEMO-CARD-01", holder_id=driver.pk)
    twin = Card.objects.create(community=community, uid="DEMOCARD01", active=False)
    lone = Card.objects.create(community=community, uid="04:a2:3b")
    site = Site.objects.create(community=community, name="S")
    charger = Charger.objects.create(community=community, site=site, identity="OLD-1")
    session = Session.objects.create(
        community=community, charger=charger, transaction_id="1", card=twin
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    new = executor.loader.project_state(executor.loader.graph.leaf_nodes()).apps
    Card = new.get_model("chargers", "ChargeCard")
    assert sorted(Card.objects.values_list("pk", "uid")) == [
        (kept.pk, "DEMOCARD01"),
        (lone.pk, "04A23B"),
    ]
    assert new.get_model("chargers", "ChargingSession").objects.get(pk=session.pk).card_id == (
        kept.pk
    )
    merge = new.get_model("communities", "AuditEvent").objects.get(action="card.merge")
    assert merge.target == "DEMOCARD01" and merge.data["merged"][0]["id"] == twin.pk
