"""One vocabulary for "who may do this": the decorator, the services (`user_can`) and the
templates (`can`) read the same table; templates compare no role names."""

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template
from django.test import RequestFactory

from communities import context_processors
from communities.access import INSTALLER_FULL, INSTALLER_LIMITED
from communities.models import Membership, Role
from communities.permissions import PERMISSIONS, Can, role_of, user_can
from tests import builders

pytestmark = pytest.mark.community_scope

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
ROLE_COMPARISON = re.compile(r"(community_role|membership\.role|\.role\b\s*(==|!=))")


def test_can_answers_from_the_table_and_refuses_unknown_permissions():
    for role in [Role.OWNER, Role.MANAGER, Role.INDIVIDUAL, INSTALLER_FULL, INSTALLER_LIMITED]:
        can = Can(role)
        assert {p for p in PERMISSIONS if p in can} == {
            p for p, roles in PERMISSIONS.items() if role in roles
        }
    assert "members:write" not in Can(None)
    with pytest.raises(ImproperlyConfigured):
        "members:wirte" in Can(Role.OWNER)  # noqa: B015 — a typo must not hide a button


def test_services_and_requests_read_the_same_roles(community, owner, manager, individual):
    company = builders.make_company()
    installer = builders.make_installer(company)
    builders.make_grant(community, company, "full")
    cases = {
        owner: Role.OWNER,
        manager: Role.MANAGER,
        individual: Role.INDIVIDUAL,
        installer: INSTALLER_FULL,
    }
    for user, role in cases.items():
        assert role_of(community, user) == role
        for permission, roles in PERMISSIONS.items():
            assert user_can(community, user, permission) == (role in roles), (role, permission)


def test_someone_who_left_holds_no_permission(community, individual):
    Membership.objects.filter(user=individual).update(state=Membership.State.LEFT)
    assert role_of(community, individual) is None
    assert not any(user_can(community, individual, p) for p in PERMISSIONS)


def test_templates_get_can_from_the_context_processor(community, owner, manager):
    request = RequestFactory().get("/")
    request.user, request.community = manager, community
    request.membership = Membership.objects.get(user=manager)
    request.community_role = Role.MANAGER
    context = context_processors.community(request)
    html = Template(
        '{% if "members:write" in can %}W{% endif %}{% if "ownership:transfer" in can %}T{% endif %}'
    ).render(Context(context))
    assert html == "W"
    assert "community_role" not in context


def test_templates_compare_no_role_names():
    offenders = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ROLE_COMPARISON.search(line):
                offenders.append(f"{path.relative_to(TEMPLATES)}:{number}")
    assert offenders == []
