"""The permission matrix, discovered from the URL resolver: every URL with a `<community>`
argument is checked for anonymous → login, outsider → 404, member without the view's permission
→ 403, member with it → allowed; installers with a full or limited grant → allowed or 403 by their
pseudo-role, installers whose grant expired or was revoked → 404; forged ids from another
community → 404; and every model with a `community` field is scoped (querying it outside a scope
raises)."""

import inspect
import re
from datetime import time, timedelta

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_scopes import ScopeError, scope

from billing.models import ExpenseNote, ExportJob
from chargers.models import ChargingSession
from communities.access import INSTALLER_FULL, INSTALLER_LIMITED
from communities.models import AccessRequest, Invitation, Role
from communities.permissions import PERMISSIONS
from forwarding.models import OperatorConnection
from power.models import Circuit
from rules.models import AccessPolicy, LearnWindow, TimeWindow, UsageLimit, UserGroup
from tests import builders


def walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def community_patterns():
    return [
        (route, p) for route, p in walk(get_resolver().url_patterns) if "<slug:community>" in route
    ]


COMMUNITY_ROUTES = community_patterns()


def test_discovery_finds_the_portal():
    names = {p.name for _, p in COMMUNITY_ROUTES}
    assert {
        "dashboard",
        "outlet-list",
        "member-list",
        "site-detail",
        "session-list",
        "export-sessions",
    } <= names
    assert len(COMMUNITY_ROUTES) >= 20


@pytest.mark.parametrize("route,pattern", COMMUNITY_ROUTES, ids=[r for r, _ in COMMUNITY_ROUTES])
def test_every_community_view_declares_a_permission(route, pattern):
    permission = getattr(pattern.callback, "community_permission", None)
    assert permission in PERMISSIONS, f"{route} has no @community_permission"


def fill(route, objects, community_slug):
    """The URL of `route` with its arguments taken from `objects` (kwarg name → pk)."""
    url = "/" + route.replace("<slug:community>", community_slug)
    for name, value in objects.items():
        url = url.replace(f"<int:{name}>", str(value))
    assert "<" not in url, f"no object for an argument of {route}: extend `objects`"
    return url


def objects_of(community, holder):
    site = builders.make_site(community)
    charger = builders.make_charger(community, site=site)
    member = builders.make_member(community, Role.INDIVIDUAL)
    company = builders.make_company()
    connector = builders.make_connector(charger)
    session = ChargingSession.objects.create(
        community=community, charger=charger, connector=connector, transaction_id="1", holder=holder
    )
    policy = AccessPolicy.objects.create(community=community, site=site, mode="members")
    window = TimeWindow.objects.create(
        community=community, policy=policy, days="12345", start=time(8), end=time(19)
    )
    return {
        "window": LearnWindow.objects.create(
            community=community, charger=charger, user=holder, expires_at=timezone.now()
        ).pk,
        "policy": policy.pk,
        "time_window": window.pk,
        "group": UserGroup.objects.create(community=community, name=f"G{community.pk}").pk,
        "site": site.pk,
        "charger": charger.pk,
        "connector": connector.pk,
        "session": session.pk,
        "member": member.pk,
        "card": builders.make_card(community, holder=holder).pk,
        "invitation": Invitation.objects.create(
            community=community,
            token_hash=f"hash-{community.pk}",
            expires_at=timezone.now() + timedelta(days=1),
        ).pk,
        "grant": builders.make_grant(community, company, "limited").pk,
        "access_request": AccessRequest.objects.create(
            community=community, user=builders.make_user()
        ).pk,
        "price": builders.make_price(community, valid_from="2099-01-01").pk,
        "circuit": Circuit.objects.create(
            community=community, site=site, name="Fuse A", limit_a=16
        ).pk,
        "meter": builders.make_meter(site).pk,
        "operator": OperatorConnection.objects.create(
            community=community,
            charger=charger,
            name="Operator",
            url="ws://127.0.0.1:9/ocpp",
            identity=charger.identity,
            role="monitoring",
        ).pk,
        # Ids that travel as query or form parameters (`?note=`, `?job=`).
        "note": ExpenseNote.objects.create(
            community=community,
            holder=holder,
            holder_name=str(holder),
            year=2025,
            month=10,
            sequence=1,
            number=f"{community.slug.upper()}-2025-10-0001",
            language="en",
            time_zone=community.time_zone,
            community_name=community.name,
            fingerprint="f",
        ).pk,
        "job": ExportJob.objects.create(
            community=community, months=["2025-10"], status=ExportJob.Status.DONE
        ).pk,
    }


@pytest.fixture
def installers(community):
    """Installer personas on `tilleuls`: a full grant, a limited one (the full one over), an
    expired grant and a revoked one."""
    now = timezone.now()
    past = now - timedelta(days=1)

    def installer(*grants):
        company = builders.make_company()
        for grant_scope, fields in grants:
            builders.make_grant(community, company, grant_scope, **fields)
        return builders.make_installer(company)

    return {
        INSTALLER_FULL: installer(("full", {})),
        INSTALLER_LIMITED: installer(
            ("full", {"valid_from": now - timedelta(days=20), "valid_until": past}),
            ("limited", {"valid_from": now - timedelta(days=6)}),
        ),
        "expired": installer(("full", {"valid_until": past})),
        "revoked": installer(("sensitive", {"revoked_at": past})),
    }


@pytest.fixture
def matrix(community, manager, individual, outsider, owner, installers):
    return {
        "objects": objects_of(community, individual),
        "foreign": objects_of(builders.community_of(outsider), outsider),
    }


def role_for(permission):
    """The weakest member role holding `permission`."""
    for role in (Role.INDIVIDUAL, Role.MANAGER, Role.OWNER):
        if role in PERMISSIONS[permission]:
            return role
    raise AssertionError(f"no member role has {permission}")


@pytest.mark.parametrize("route,pattern", COMMUNITY_ROUTES, ids=[r for r, _ in COMMUNITY_ROUTES])
def test_permission_matrix(
    client, route, pattern, matrix, manager, individual, owner, outsider, installers
):
    permission = pattern.callback.community_permission
    url = fill(route, matrix["objects"], "tilleuls")

    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"], "anonymous"

    for name, user in [("outsider", outsider)] + [
        (f"installer {k}", installers[k]) for k in ("expired", "revoked")
    ]:
        client.force_login(user)
        assert client.get(url).status_code == 404, name
        assert client.post(url).status_code == 404, f"{name} POST"

    if Role.INDIVIDUAL not in PERMISSIONS[permission]:
        client.force_login(individual)
        assert client.get(url).status_code == 403, "individual without the permission"
        assert client.post(url).status_code == 403, "individual POST without the permission"
    if Role.MANAGER not in PERMISSIONS[permission]:
        client.force_login(manager)
        assert client.post(url).status_code == 403, "manager POST without the permission"

    for pseudo_role in (INSTALLER_FULL, INSTALLER_LIMITED):
        client.force_login(installers[pseudo_role])
        if pseudo_role in PERMISSIONS[permission]:
            assert client.get(url).status_code not in (403, 404), f"{pseudo_role} allowed"
        else:
            assert client.get(url).status_code == 403, f"{pseudo_role} without the permission"
            assert client.post(url).status_code == 403, f"{pseudo_role} POST without it"

    allowed = {Role.INDIVIDUAL: individual, Role.MANAGER: manager, Role.OWNER: owner}[
        role_for(permission)
    ]
    client.force_login(allowed)
    assert client.get(url).status_code not in (403, 404), "member with the permission"


def test_limited_installer_sees_no_personal_data(client, installers):
    """Limited access: charger health, configuration, message log; no sessions, no users."""
    assert INSTALLER_LIMITED not in PERMISSIONS["sessions:view_all"]
    assert INSTALLER_LIMITED not in PERMISSIONS["members:view"]
    assert INSTALLER_LIMITED not in PERMISSIONS["community:view"]
    client.force_login(installers[INSTALLER_LIMITED])
    assert client.get("/c/tilleuls/sessions/").status_code == 403
    assert client.get("/c/tilleuls/users/").status_code == 403
    assert client.get("/c/tilleuls/sites/").status_code == 200


def test_unknown_community_is_404_like_a_foreign_one(client, manager):
    client.force_login(manager)
    assert client.get("/c/does-not-exist/").status_code == 404


def test_member_who_left_gets_404(client, community):
    m = builders.make_member(community, Role.MANAGER, state="left")
    client.force_login(m.user)
    assert client.get("/c/tilleuls/").status_code == 404


OBJECT_ROUTES = [(r, p) for r, p in COMMUNITY_ROUTES if "<int:" in r]


@pytest.mark.parametrize("route,pattern", OBJECT_ROUTES, ids=[r for r, _ in OBJECT_ROUTES])
def test_forged_ids_from_another_community_are_404(client, route, pattern, matrix, manager, owner):
    """My community in the URL, another community's object id: 404, GET and POST."""
    client.force_login(
        owner if role_for(pattern.callback.community_permission) == Role.OWNER else manager
    )
    url = fill(route, matrix["foreign"], "tilleuls")
    assert client.get(url).status_code in (404, 405)  # 405: a POST-only action
    assert client.post(url).status_code == 404


# Views that take object ids as query or form parameters: URL name → (method, parameter, other
# parameters). A forged id of another community must answer 404, never its data.
QUERY_ID_VIEWS = {
    "note-download": ("get", "note", {}),
    "export-resend": ("post", "note", {"kind": "finance"}),
    "export-job": ("get", "job", {}),
    "export-download": ("get", "job", {}),
}
# Views that only show an object named by a parameter when it is theirs (no 404 needed).
QUERY_ID_OPTIONAL = {
    "export-list": {"job"},
    "session-list": {"site", "user"},
    # A user of another community is not among the form's choices: nothing is set.
    "limit-set": {"user"},
    "rules-page": {"user", "site"},  # shows that form, unbound; outlets filtered by site
    # A charger or user of another community is not among the form's choices: nothing opens.
    "learn-start": {"charger", "user"},
    "dashboard": {"site", "user"},
    "outlet-list": {"site"},
}
ID_PARAMETERS = {"note", "job", "session", "charger", "connector", "card", "member", "site", "user"}
_READS = re.compile(
    r"""(?:request\.(?:GET|POST)(?:\.get\(|\[)|_object_id\(request,\s*|cleaned_data\[)\s*["'](\w+)["']"""
)


def parameters_read(view) -> set[str]:
    """The query/form parameter names a view reads (its source, and the forms it builds)."""
    view = inspect.unwrap(view)
    source = inspect.getsource(view)
    names = set(_READS.findall(source))
    for name, value in inspect.getmodule(view).__dict__.items():
        if name in source and hasattr(value, "base_fields"):  # a form the view uses
            names |= set(value.base_fields)
    return names & ID_PARAMETERS


def test_every_view_reading_an_id_parameter_is_in_the_matrix():
    found = {}
    for route, pattern in COMMUNITY_ROUTES:
        if "<int:" in route:
            continue  # ids in the path: test_forged_ids_from_another_community_are_404
        names = parameters_read(pattern.callback)
        if names:
            found[pattern.name] = names
    covered = {name: {param} for name, (_, param, _) in QUERY_ID_VIEWS.items()}
    covered |= QUERY_ID_OPTIONAL
    assert found == covered


@pytest.mark.parametrize("name", sorted(QUERY_ID_VIEWS))
def test_forged_query_ids_from_another_community_are_404(client, name, matrix, manager):
    method, param, extra = QUERY_ID_VIEWS[name]
    route = next(r for r, p in COMMUNITY_ROUTES if p.name == name)
    url = fill(route, {}, "tilleuls")
    client.force_login(manager)
    call = getattr(client, method)
    headers = {"HTTP_HX_REQUEST": "true"}
    assert call(url, {param: matrix["foreign"][param], **extra}, **headers).status_code == 404
    if name == "export-job":  # the community's own id answers: not a blanket 404
        assert call(url, {param: matrix["objects"][param]}, **headers).status_code == 286


def test_a_foreign_job_id_on_the_export_page_shows_nothing(client, matrix, manager):
    client.force_login(manager)
    response = client.get("/c/tilleuls/exports/", {"job": matrix["foreign"]["job"]})
    assert response.status_code == 200 and response.context["job"] is None
    response = client.get("/c/tilleuls/exports/", {"job": matrix["objects"]["job"]})
    assert response.context["job"].pk == matrix["objects"]["job"]


def test_foreign_ids_do_not_filter_the_sessions(client, matrix, manager, outsider):
    client.force_login(manager)
    for param, value in (("site", matrix["foreign"]["site"]), ("user", outsider.pk)):
        response = client.get("/c/tilleuls/sessions/", {param: value})
        assert response.status_code == 200 and param in response.context["form"].errors


def test_unknown_permission_fails_at_import():
    from django.core.exceptions import ImproperlyConfigured

    from communities.permissions import community_permission

    with pytest.raises(ImproperlyConfigured):
        community_permission("sites:delete-everything")


TENANT_MODELS = [m for m in apps.get_models() if any(f.name == "community" for f in m._meta.fields)]


def test_tenant_models_found():
    names = {m.__name__ for m in TENANT_MODELS}
    assert {
        "Membership",
        "Site",
        "Charger",
        "Connector",
        "ChargeCard",
        "ChargingSession",
        "Price",
    } <= names


@pytest.mark.parametrize("model", TENANT_MODELS, ids=[m.__name__ for m in TENANT_MODELS])
def test_every_tenant_model_is_scoped(model, db):
    with scope():
        with pytest.raises(ScopeError):
            list(model.objects.all())
        with pytest.raises(ScopeError):
            model.objects.filter(pk=1).exists()


def test_a_limit_for_a_user_of_another_community_sets_nothing(client, manager, outsider):
    client.force_login(manager)
    response = client.post("/c/tilleuls/rules/limits/", {"user": outsider.pk, "monthly_kwh": "5"})
    assert response.status_code == 302
    assert not UsageLimit.objects.with_scopes_disabled().exists()


def test_a_learn_window_on_a_charger_of_another_community_opens_nothing(client, manager, outsider):
    foreign = builders.make_charger(builders.community_of(outsider))
    client.force_login(manager)
    client.post("/c/tilleuls/cards/learn/", {"charger": foreign.pk})
    assert not LearnWindow.objects.with_scopes_disabled().exists()
