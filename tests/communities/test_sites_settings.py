import pytest

from communities.models import AuditEvent, Site
from tests import builders

# The bodies run as a portal request or a community task does: inside the community scope.
pytestmark = pytest.mark.community_scope


def test_add_site(manager_client, community):
    response = manager_client.post("/c/tilleuls/sites/add/", {"name": "Garage", "address": "1 rue"})
    site = Site.objects.get(community=community, name="Garage")
    assert response["Location"] == f"/c/tilleuls/sites/{site.pk}/"
    assert AuditEvent.objects.filter(action="site.create").exists()


def test_duplicate_site_name_refused(manager_client, site):
    response = manager_client.post("/c/tilleuls/sites/add/", {"name": site.name, "address": ""})
    assert "already exists" in str(response.context["form"].errors["name"])


def test_edit_site(manager_client, site):
    manager_client.post(
        f"/c/tilleuls/sites/{site.pk}/edit/",
        {"name": "Parking B", "address": "x"},
    )
    site.refresh_from_db()
    assert site.name == "Parking B" and site.address == "x"


def test_site_page_shows_chargers_and_outlet_states(manager_client, community, site):
    charger = builders.make_charger(community, site=site, identity="CP-SITE-1", connected=True)
    builders.make_connector(charger, 1, status="Charging")
    content = manager_client.get(f"/c/tilleuls/sites/{site.pk}/").content.decode()
    assert "CP-SITE-1" in content and "badge-charging" in content


def test_site_list_query_count(manager_client, community, django_assert_max_num_queries):
    for _ in range(10):
        builders.make_charger(community)
    with django_assert_max_num_queries(10):
        manager_client.get("/c/tilleuls/sites/")


def test_settings_update_community(manager_client, community):
    data = {
        "name": "Tilleuls",
        "kind": "company",
        "address": "2 rue",
        "time_zone": "Europe/London",
        "expense_email": "finance@example.com",
    }
    response = manager_client.post("/c/tilleuls/settings/", data)
    assert response.status_code == 302
    community.refresh_from_db()
    assert (community.name, community.time_zone, community.expense_email) == (
        "Tilleuls",
        "Europe/London",
        "finance@example.com",
    )
    assert AuditEvent.objects.get(action="community.update").data["fields"] == [
        "address",
        "expense_email",
        "name",
        "time_zone",
    ]


def test_settings_invalid_email(manager_client, community):
    data = {
        "name": "T",
        "kind": "company",
        "address": "",
        "time_zone": "Europe/Paris",
        "expense_email": "nope",
    }
    response = manager_client.post("/c/tilleuls/settings/", data)
    assert response.status_code == 200 and "expense_email" in response.context["form"].errors
