"""The new community's checklist on the dashboard: add a site → add a charger → set the price →
add users, ticked from real data, each step linking to its page; gone once all are done; only
for those who can set the community up."""

import pytest

from billing.models import Price
from communities.models import Community, Role
from tests import builders

pytestmark = pytest.mark.community_scope


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def fresh(db):
    """A community just created: no site, no charger, no price, its owner alone."""
    return builders.make_community(name="Résidence Neuve", slug="neuve", kind="condominium")


@pytest.fixture
def owner_client(client, fresh):
    client.force_login(builders.make_member(fresh, Role.OWNER).user)
    return client


def checklist(client, slug="neuve"):
    html = client.get(f"/c/{slug}/").content.decode()
    if 'id="onboarding"' not in html:
        return None
    start = html.index('id="onboarding"')
    return html[start : html.index("</section>", start)]


@pytest.mark.community_scope("fresh")
def test_a_new_community_gets_the_checklist_with_links(owner_client, fresh):
    html = checklist(owner_client)
    assert html is not None
    for title in ("Add a site", "Add a charger", "Set the price per kWh", "Add users"):
        assert title in html
    assert 'href="/c/neuve/sites/add/"' in html
    assert 'href="/c/neuve/settings/"' in html and 'href="/c/neuve/users/add/"' in html
    assert "— done" not in html
    # No site yet: adding a charger links nowhere.
    assert "/c/neuve/sites/" not in html.replace("/c/neuve/sites/add/", "")


@pytest.mark.community_scope("fresh")
def test_steps_are_ticked_from_real_data_then_the_list_goes(owner_client, fresh):
    site = builders.make_site(fresh)
    html = checklist(owner_client)
    assert html.count("— done") == 1 and f'href="/c/neuve/sites/{site.pk}/"' in html
    builders.make_charger(fresh, site=site)
    builders.make_price(fresh)
    assert checklist(owner_client).count("— done") == 3
    builders.make_member(fresh, Role.INDIVIDUAL)
    assert checklist(owner_client) is None


@pytest.mark.community_scope("fresh")
def test_a_home_needs_no_other_users(owner_client, fresh):
    Community.objects.filter(pk=fresh.pk).update(kind="home")
    site = builders.make_site(fresh)
    builders.make_charger(fresh, site=site)
    Price.objects.create(community=fresh, price_per_kwh="0.25", valid_from="2020-01-01")
    assert checklist(owner_client) is None


@pytest.mark.community_scope("fresh")
def test_drivers_do_not_see_it(client, fresh):
    client.force_login(builders.make_member(fresh, Role.INDIVIDUAL).user)
    assert checklist(client) is None


def test_a_community_in_service_has_no_checklist(manager_client, community, charger, individual):
    assert checklist(manager_client, "tilleuls") is None
