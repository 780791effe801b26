"""Shared fixtures. Unit tests run tasks in-process (eager); the e2e tests start real processes.

django-scopes is disabled while fixtures are built (pretix's `pytest_fixture_setup` hook), never
for a test body: a service or a task called from a test meets the scoping it meets in production.
A test that reads tenant data enters the community's scope (`with scope(community=c):`), or is
marked `community_scope`: its body then runs inside the scope of its `community` fixture, as a
portal request or a community task does (never for the gateway's or the worker's entry points,
which run with no community in scope)."""

import pytest
from django_scopes import scope, scopes_disabled

from communities.models import Role

from . import builders


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Fixtures build data across communities; the test body then runs with scoping on."""
    with scopes_disabled():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """`@pytest.mark.community_scope` (or `community_scope("other_fixture")`): run the test body
    inside the scope of that fixture's community (the fixture is a community, or a mapping with
    one under "community"), as the middleware runs a view."""
    marker = item.get_closest_marker("community_scope")
    community = (
        item.funcargs.get(marker.args[0] if marker.args else "community") if marker else None
    )
    if isinstance(community, dict):
        community = community.get("community")
    if community is None:  # unmarked, or a test of the module that uses no community
        yield
        return
    with scope(community=community):
        yield


@pytest.fixture(autouse=True)
def _eager_tasks(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from sparklin.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def community(db):
    c = builders.make_community(name="Résidence Les Tilleuls", slug="tilleuls")
    builders.make_price(c)
    return c


@pytest.fixture
def manager(community):
    return builders.make_member(community, Role.MANAGER).user


@pytest.fixture
def owner(community):
    return builders.make_member(community, Role.OWNER).user


@pytest.fixture
def individual(community):
    return builders.make_member(community, Role.INDIVIDUAL).user


@pytest.fixture
def outsider(db):
    other = builders.make_community(slug="elsewhere")
    return builders.make_member(other, Role.MANAGER).user


@pytest.fixture
def site(community):
    return builders.make_site(community, name="Parking A")


@pytest.fixture
def charger(community, site):
    return builders.make_charger(community, site=site, identity="CP-TEST-01")


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client
