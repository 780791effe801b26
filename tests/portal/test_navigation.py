"""Grouped tabs: supervision / management / settings, Leave in the account menu, a badge on
pending access requests."""

import re

from communities.models import AccessRequest
from tests import builders


def _tab_rows(html):
    groups = re.search(r'<ul class="tab-groups">(.*?)</ul>', html, re.S).group(1)
    pages = re.search(r'<ul class="tab-pages">(.*?)</ul>', html, re.S)
    return groups, pages.group(1) if pages else ""


def test_owner_sees_three_groups_and_the_current_groups_pages(client, owner):
    client.force_login(owner)
    client.cookies["django_language"] = "fr"
    html = client.get("/c/tilleuls/").content.decode()
    groups, pages = _tab_rows(html)
    assert groups.count("<li>") == 3
    assert "Tableau de bord" in pages and 'aria-current="page"' in pages
    html = client.get("/c/tilleuls/installer-access/").content.decode()
    _groups, pages = _tab_rows(html)
    assert "/installer-access/" in pages and "/audit/" in pages and "/users/" not in pages


def test_leave_is_in_the_account_menu_not_in_the_tabs(client, individual):
    client.force_login(individual)
    html = client.get("/c/tilleuls/").content.decode()
    groups, pages = _tab_rows(html)
    assert "/leave/" not in groups + pages
    menu = re.search(r'<details class="menu account-menu">(.*?)</details>', html, re.S).group(1)
    assert "/c/tilleuls/leave/" in menu and "/accounts/logout/" in menu


def test_pending_access_requests_badge(client, manager, community):
    AccessRequest.objects.create(community=community, user=builders.make_user())
    AccessRequest.objects.create(community=community, user=builders.make_user())
    client.force_login(manager)
    groups, _pages = _tab_rows(client.get("/c/tilleuls/").content.decode())
    assert '<span class="count"' in groups and ">2</span>" in groups
    _groups, pages = _tab_rows(client.get("/c/tilleuls/access-requests/").content.decode())
    assert ">2</span>" in pages


def test_limited_installer_sees_only_charger_care(client, community):
    from datetime import timedelta

    from django.utils import timezone

    company = builders.make_company()
    builders.make_grant(
        community, company, "limited", valid_from=timezone.now() - timedelta(days=1)
    )
    client.force_login(builders.make_installer(company))
    html = client.get("/c/tilleuls/sites/").content.decode()
    groups, pages = _tab_rows(html)
    assert "/settings/" not in groups + pages and "/users/" not in groups + pages
