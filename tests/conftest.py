"""Shared fixtures. Unit tests run tasks in-process (eager); the e2e tests start real processes.

Every test runs with django-scopes disabled so fixtures and assertions can read any tenant; the
request path still enters the community scope itself (the middleware), so views are tested
with the real scoping."""

import pytest
from django_scopes import scopes_disabled

from communities.models import Role

from . import builders


@pytest.fixture(autouse=True)
def _scopes_disabled():
    with scopes_disabled():
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
