"""Learn by scanning: a window on one charger for one member; the next card presented there
(1.6 Authorize/StartTransaction idTag, 2.0.1 idToken) is offered with its UID, conflicts
explained, nothing added without confirmation."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_scopes import scope

from chargers.models import ChargeCard
from rules import services
from rules.models import LearnWindow
from tests import builders
from tests.ocpp_gateway.test_gateway import _fast, exchange, raw_client, run  # noqa: F401


async def _present_16(gw, identity, uid):
    ws = await raw_client(gw.url, identity, protocols=["ocpp1.6"])
    answer = await exchange(ws, [2, "a1", "Authorize", {"idTag": uid}])
    await ws.close()
    return answer[2]["idTagInfo"]["status"]


async def _present_201(gw, identity, uid):
    ws = await raw_client(gw.url, identity, protocols=["ocpp2.0.1"])
    token = {"idToken": uid, "type": "ISO15693"}
    answer = await exchange(ws, [2, "a1", "Authorize", {"idToken": token}])
    await ws.close()
    return answer[2]["idTokenInfo"]["status"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_card_presented_at_the_charger_is_offered_then_added_on_confirmation(
    community, manager, individual, charger, version
):
    with scope(community=community):
        window = services.open_learn_window(charger=charger, actor=manager, user=individual)
    present = _present_16 if version == "1.6" else _present_201
    # Unknown until confirmed: the charger is told so, nothing is added.
    assert run(lambda gw: present(gw, charger.identity, "04:a2:3b:99")) == "Invalid"
    with scope(community=community):
        window.refresh_from_db()
        assert (window.state, window.scanned_uid) == (LearnWindow.State.SCANNED, "04A23B99")
        assert not ChargeCard.objects.exists()
        card = services.confirm_learn_window(window=window, actor=manager, name="Badge")
        assert (card.uid, card.holder, card.name) == ("04A23B99", individual, "Badge")
        window.refresh_from_db()
        assert window.state == LearnWindow.State.CONFIRMED
    # Now known: accepted.
    assert run(lambda gw: present(gw, charger.identity, "04A23B99")) == "Accepted"


@pytest.mark.django_db(transaction=True)
def test_nothing_is_learned_without_an_open_window(community, manager, individual, charger):
    with scope(community=community):
        window = services.open_learn_window(charger=charger, actor=manager, user=individual)
        services.cancel_learn_window(window=window, actor=manager)
    assert run(lambda gw: _present_16(gw, charger.identity, "CAFE")) == "Invalid"
    with scope(community=community):
        window.refresh_from_db()
        assert window.state == LearnWindow.State.CANCELLED and not window.scanned_uid


@pytest.mark.community_scope
def test_conflicts_are_explained(community, manager, individual, charger, outsider):
    other = builders.make_member(community).user
    builders.make_card(community, holder=other, uid="BEEF")
    builders.make_card(builders.community_of(outsider), holder=outsider, uid="FACE")
    window = services.open_learn_window(charger=charger, actor=manager, user=individual)
    LearnWindow.objects.filter(pk=window.pk).update(state="scanned", scanned_uid="BEEF")
    window.refresh_from_db()
    blocking, _notes = services.learn_conflicts(window)
    assert other.get_full_name() in blocking
    with pytest.raises(services.RulesError):
        services.confirm_learn_window(window=window, actor=manager)
    LearnWindow.objects.filter(pk=window.pk).update(scanned_uid="FACE")
    window.refresh_from_db()
    blocking, notes = services.learn_conflicts(window)
    assert blocking == "" and len(notes) == 1  # registered in another community: allowed
    assert services.confirm_learn_window(window=window, actor=manager).uid == "FACE"


@pytest.mark.community_scope
def test_a_driver_learns_only_their_own_card(community, individual, charger):
    other = builders.make_member(community).user
    with pytest.raises(services.RulesError):
        services.open_learn_window(charger=charger, actor=individual, user=other)
    window = services.open_learn_window(charger=charger, actor=individual, user=individual)
    assert window.expires_at - window.opened_at == timedelta(minutes=2)


@pytest.mark.community_scope
def test_the_learn_page_counts_down_then_shows_the_card(client, community, individual, charger):
    client.force_login(individual)
    response = client.post("/c/tilleuls/cards/learn/", {"charger": charger.pk})
    window = LearnWindow.objects.get()
    assert response["Location"] == f"/c/tilleuls/cards/learn/{window.pk}/"
    url = response["Location"]
    page = client.get(url)
    assert page.context["window"].remaining_seconds > 100
    assert 'hx-trigger="every 2s"' in page.content.decode()
    LearnWindow.objects.filter(pk=window.pk).update(
        state="scanned", scanned_uid="04A23B77", scanned_at=timezone.now()
    )
    status = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "04A23B77" in status and "every 2s" not in status
    client.post(url + "confirm/", {"name": "Mon badge"})
    assert ChargeCard.objects.get().holder == individual
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        again = client.post("/c/tilleuls/cards/learn/", {"charger": charger.pk})
        expired = LearnWindow.objects.get(state="open")
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert "every 2s" not in client.get(again["Location"]).content.decode()
        assert expired.expired


@pytest.mark.community_scope
def test_someone_elses_learn_window_is_404_for_a_driver(client, community, manager, charger):
    other = builders.make_member(community).user
    window = services.open_learn_window(charger=charger, actor=manager, user=manager)
    client.force_login(other)
    assert client.get(f"/c/tilleuls/cards/learn/{window.pk}/").status_code == 404


@pytest.mark.community_scope
def test_above_a_bound_the_charger_is_typed_not_chosen_from_a_list(
    client, community, individual, charger, outsider, monkeypatch, settings
):
    """A fleet's 10,000 chargers are not listed in the learn form of every person's page:
    above `LEARN_CHARGERS_MAX` the serial number is typed, found in the community only."""
    from rules import forms

    settings.LANGUAGE_CODE = "en"
    client.force_login(individual)
    assert 'id="learn-charger"' in client.get("/c/tilleuls/my-sessions/").content.decode()
    monkeypatch.setattr(forms, "LEARN_CHARGERS_MAX", 2)
    for i in range(2):
        builders.make_charger(community, identity=f"CP-TYPED-{i}")
    page = client.get("/c/tilleuls/my-sessions/").content.decode()
    assert 'id="learn-identity"' in page and "<option" not in page.split("learn-identity")[1]
    foreign = builders.make_charger(builders.community_of(outsider), identity="CP-FAR")
    refused = client.post(
        "/c/tilleuls/cards/learn/", {"identity": foreign.identity, "next": "/c/tilleuls/"}
    )
    assert not LearnWindow.objects.exists()
    assert "No charger of this community has the serial number CP-FAR." in [
        str(m) for m in refused.wsgi_request._messages
    ]
    response = client.post("/c/tilleuls/cards/learn/", {"identity": " cp-typed-1 "})
    window = LearnWindow.objects.get()
    assert window.charger.identity == "CP-TYPED-1"
    assert response["Location"] == f"/c/tilleuls/cards/learn/{window.pk}/"
