"""Roles live in the database (Membership.role); permissions are strings in code, checked by one
decorator. An unknown permission string fails at import, so a typo can never open a view.

Installer companies get pseudo-roles from their access grants (`communities.access`):
`installer_full` is a manager without the owner's actions (ownership, installer access) and
without leaving; `installer_limited` sees charger health, configuration and the message log —
no personal data, no sessions, no users.

One vocabulary for "who may do this", asked in three places with the same strings:
- views: `@community_permission("members:write")` (403 for roles without it);
- services: `user_can(community, actor, "members:write")` before they change anything (a task,
  a management command or another view may call them, so they do not trust the caller);
- templates: `{% if "members:write" in can %}` (`can` comes from the context processor).
Nothing else compares role names."""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from .access import INSTALLER_FULL, INSTALLER_LIMITED, installer_access
from .models import Membership, Role

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from django.http import HttpRequest

    from .access import Person
    from .models import Community

_OWNER: set[str] = {Role.OWNER}
_MANAGERS: set[str] = {Role.OWNER, Role.MANAGER}
_MEMBERS: set[str] = {Role.OWNER, Role.MANAGER, Role.INDIVIDUAL}
_MANAGERS_AND_INSTALLER = _MANAGERS | {INSTALLER_FULL}
_MEMBERS_AND_INSTALLER = _MEMBERS | {INSTALLER_FULL}
_CHARGER_CARE = _MANAGERS | {INSTALLER_FULL, INSTALLER_LIMITED}

ALL_ROLES = [Role.OWNER, Role.MANAGER, Role.INDIVIDUAL, INSTALLER_FULL, INSTALLER_LIMITED]

PERMISSIONS: dict[str, set[str]] = {
    "community:view": _MEMBERS_AND_INSTALLER,  # dashboard, own sessions and cards
    "community:manage": _MANAGERS_AND_INSTALLER,  # company configuration: price, e-mail, name
    "community:leave": _MEMBERS,  # leave the installation (moving out)
    "members:view": _MANAGERS_AND_INSTALLER,
    "members:write": _MANAGERS_AND_INSTALLER,
    "access_requests:decide": _MANAGERS_AND_INSTALLER,
    "ownership:invite": _OWNER | {INSTALLER_FULL},  # hand-over (installer), transfer (owner)
    # An owner transfers the ownership (and may change or remove another owner); an installer
    # only hands an installation over to its first owner.
    "ownership:transfer": _OWNER,
    "installer_access:manage": _OWNER,  # extend or revoke an installer company's access
    "audit:view": _MANAGERS,  # the community's audit log (who changed what, access changes)
    "sites:view": _CHARGER_CARE,
    "sites:write": _MANAGERS_AND_INSTALLER,
    "outlets:view": _MEMBERS | {INSTALLER_FULL, INSTALLER_LIMITED},  # no names without sessions
    "chargers:view": _CHARGER_CARE,  # health, configuration, message log
    "chargers:configure": _CHARGER_CARE,  # commissioning page, settings, reconfigure
    "chargers:write": _MANAGERS_AND_INSTALLER,  # register, claim, edit, move, delete
    # Fleet operations on a charger (restart, unlock, availability, report): a limited
    # installer sees the charger page but does not act on the charger.
    "chargers:operate": _MANAGERS_AND_INSTALLER,
    "cards:write": _MANAGERS_AND_INSTALLER,
    # Relay a charger's OCPP traffic to a third-party operator (forwarding/): managers and
    # installers with full access (it decides who authorizes charging in the Billing role).
    "operators:manage": _MANAGERS_AND_INSTALLER,
    # Rules of use (rules/): user groups, access policies, time windows, limits; the refusals.
    "rules:manage": _MANAGERS_AND_INSTALLER,
    "sessions:view_all": _MANAGERS_AND_INSTALLER,
    # Start and stop charging from the portal (drivers their own sessions, managers any):
    # members only, an installer does not charge on a driver's behalf.
    "charging:remote": _MEMBERS,
    "exports:run": _MANAGERS_AND_INSTALLER,
    # Expense notes (billing): every member sees and downloads their own; managers see all,
    # export and send them. Installers do not (names and charging habits of drivers).
    "notes:view_own": _MEMBERS,
    "notes:manage": _MANAGERS,
    # Power management (power/): the site's electrical model, its modes and the live Power
    # page. Installers with any access: wiring, fuses and limits are the installer's trade.
    "power:view": _CHARGER_CARE,
    "power:write": _CHARGER_CARE,
}


def role_has(role: str | None, permission: str) -> bool:
    """Whether a role (a member's, or an installer's pseudo-role) holds `permission`."""
    return role is not None and role in PERMISSIONS[permission]


def role_of(community: Community, user: Person | None) -> str | None:
    """The role `user` acts with in `community`: their current membership's role, else their
    installer pseudo-role (grants in force), else None. What the middleware computes for a
    request, for callers without one (services, tasks)."""
    if user is None or not user.is_authenticated:
        return None
    role: str | None = (
        Membership.objects.with_scopes_disabled()
        .current()
        .of(community, user)
        .values_list("role", flat=True)
        .first()
    )
    if role is not None:
        return role
    return installer_access(community, user)[0]


def user_can(community: Community, user: Person | None, permission: str) -> bool:
    """Whether `user` may do `permission` in `community` — what services ask."""
    _known(permission)
    return role_has(role_of(community, user), permission)


def request_role(request: HttpRequest) -> str | None:
    """The member's role or the installer's pseudo-role, as set by the middleware."""
    role: str | None = getattr(request, "community_role", None)
    if role is None:
        membership: Membership | None = getattr(request, "membership", None)
        role = membership.role if membership is not None else None
    return role


def has_permission(request: HttpRequest, permission: str) -> bool:
    """Whether the request's person may do `permission` in the request's community."""
    _known(permission)
    return role_has(request_role(request), permission)


class Can:
    """The permissions of one role, for templates: `{% if "members:write" in can %}`. Asking
    for a permission that does not exist raises (a typo must not hide a button silently)."""

    def __init__(self, role: str | None):
        self.role = role

    def __contains__(self, permission: str) -> bool:
        _known(permission)
        return role_has(self.role, permission)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(p for p in PERMISSIONS if role_has(self.role, p)))

    def __bool__(self) -> bool:
        return self.role is not None


def _known(permission: str) -> None:
    if permission not in PERMISSIONS:
        raise ImproperlyConfigured(f"Unknown permission {permission!r}")


def community_permission(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard a view under /c/<community>/…: the middleware has already resolved the community,
    entered its scope and answered 404 to outsiders; this answers 403 to members and installers
    whose role lacks `permission`."""
    _known(permission)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if getattr(request, "community", None) is None:
                raise ImproperlyConfigured(
                    f"{view.__qualname__} is guarded by {permission!r} but its URL has no "
                    "<community> argument"
                )
            if not has_permission(request, permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapper.community_permission = permission  # type: ignore[attr-defined]
        return wrapper

    return decorator
