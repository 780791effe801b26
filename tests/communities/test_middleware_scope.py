"""The middleware's scoping does not depend on the caller's: a URL without a community runs with
no community even inside an enclosing scope (a test body's), a community URL in its own."""

from django.test import RequestFactory
from django_scopes import get_scope, scope

from communities.middleware import CommunityScopeMiddleware
from tests import builders


def seen_scope(path, user, community):
    seen = {}

    def view(request):
        seen.update(get_scope())
        return None

    request = RequestFactory().get(path)
    request.user = user
    with scope(community=community):
        CommunityScopeMiddleware(view)(request)
    return seen


def test_a_url_without_community_inherits_none(community, manager):
    seen = seen_scope("/communities/new/", manager, community)
    assert seen.get("_enabled") is True and "community" not in seen


def test_a_community_url_runs_in_its_own_community(community, manager, outsider):
    other = builders.community_of(outsider)
    seen = seen_scope("/c/tilleuls/", manager, other)
    assert seen["community"] == community
