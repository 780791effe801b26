"""The one place a request enters a tenant. For every URL with a `<community>` argument: anonymous
→ login; a current member → their role; not a member but in an installer company with a grant in
force on that community → an installer pseudo-role (`installer_full` / `installer_limited`, see
`communities.access`); anyone else (an expired or revoked grant included) → 404. Then
`request.community`, `request.membership` (None for installers), `request.community_role` and
`request.installer_company` are set and the whole view runs inside `scope(community=...)`, so
scoped querysets filter themselves. Other URLs run with no community in scope: a tenant query
there raises `ScopeError` unless the code says `scopes_disabled()` on purpose."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.urls import Resolver404, resolve
from django_scopes import scope, scopes_disabled
from django_scopes.state import state as _scope_state

from .access import installer_access
from .models import Community, Membership


@contextmanager
def no_community() -> Iterator[None]:
    """Scoping on and no community at all, whatever the caller had entered: a URL without a
    community never inherits one (`scope()` would keep an enclosing scope's community — a test
    body's, or a view calling another view)."""
    token = _scope_state.set({"_enabled": True})
    try:
        yield
    finally:
        _scope_state.reset(token)


class CommunityScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.community = None
        request.membership = None
        request.community_role = None
        request.installer_company = None
        try:
            match = resolve(request.path_info)
        except Resolver404:
            with no_community():
                return self.get_response(request)

        if match.app_name == "admin":
            # Platform staff only (Django admin checks is_staff); staff see every tenant.
            with scopes_disabled():
                return self.get_response(request)

        slug = match.kwargs.get("community")
        if slug is None:
            with no_community():
                return self.get_response(request)

        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = (
            Membership.objects.with_scopes_disabled()
            .current()
            .select_related("community")
            .filter(community__slug=slug, user=request.user)
            .first()
        )
        if membership is not None:
            community, role = membership.community, membership.role
        else:
            community = Community.objects.filter(slug=slug).first()
            role, company = installer_access(community, request.user) if community else (None,) * 2
            if role is None:
                # Same answer for a community that does not exist, one you are not part of and
                # one whose installer grant ended.
                raise Http404("No such community")
            request.installer_company = company
        request.community = community
        request.membership = membership
        request.community_role = role
        with scope(community=community):
            return self.get_response(request)


def user_communities(user):
    """The communities a person can switch between (active and invited memberships)."""
    if not user.is_authenticated:
        return Community.objects.none()
    memberships = Membership.objects.with_scopes_disabled().current().filter(user=user)
    return Community.objects.filter(pk__in=memberships.values("community")).order_by("name")
