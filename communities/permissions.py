"""Roles live in the database (Membership.role); permissions are strings in code, checked by one
decorator. An unknown permission string fails at import, so a typo can never open a view.

Installer companies get pseudo-roles from their access grants (`communities.access`):
`installer_full` is a manager without the owner's actions (ownership, installer access) and
without leaving; `installer_limited` sees charger health, configuration and the message log —
no personal data, no sessions, no users."""

from functools import wraps

from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from .access import INSTALLER_FULL, INSTALLER_LIMITED
from .models import Role

_OWNER = {Role.OWNER}
_MANAGERS = {Role.OWNER, Role.MANAGER}
_MEMBERS = {Role.OWNER, Role.MANAGER, Role.INDIVIDUAL}
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
    "installer_access:manage": _OWNER,  # extend or revoke an installer company's access
    "audit:view": _MANAGERS,  # the community's audit log (who changed what, access changes)
    "sites:view": _CHARGER_CARE,
    "sites:write": _MANAGERS_AND_INSTALLER,
    "outlets:view": _MEMBERS | {INSTALLER_FULL, INSTALLER_LIMITED},  # no names without sessions
    "chargers:view": _CHARGER_CARE,  # health, configuration, message log
    "chargers:configure": _CHARGER_CARE,  # commissioning page, settings, reconfigure
    "chargers:write": _MANAGERS_AND_INSTALLER,  # register, claim, edit
    "cards:write": _MANAGERS_AND_INSTALLER,
    "sessions:view_all": _MANAGERS_AND_INSTALLER,
    # Start and stop charging from the portal (drivers their own sessions, managers any):
    # members only, an installer does not charge on a driver's behalf.
    "charging:remote": _MEMBERS,
    "exports:run": _MANAGERS_AND_INSTALLER,
    # Expense notes (billing): every member sees and downloads their own; managers see all,
    # export and send them. Installers do not (names and charging habits of drivers).
    "notes:view_own": {Role.OWNER, Role.MANAGER, Role.INDIVIDUAL},
    "notes:manage": {Role.OWNER, Role.MANAGER},
}


def role_has(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


def request_role(request) -> str | None:
    """The member's role or the installer's pseudo-role, as set by the middleware."""
    role = getattr(request, "community_role", None)
    if role is None:
        membership = getattr(request, "membership", None)
        role = membership.role if membership is not None else None
    return role


def has_permission(request, permission: str) -> bool:
    role = request_role(request)
    return role is not None and role_has(role, permission)


def community_permission(permission: str):
    """Guard a view under /c/<community>/…: the middleware has already resolved the community,
    entered its scope and answered 404 to outsiders; this answers 403 to members and installers
    whose role lacks `permission`."""
    if permission not in PERMISSIONS:
        raise ImproperlyConfigured(f"Unknown permission {permission!r}")

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if getattr(request, "community", None) is None:
                raise ImproperlyConfigured(
                    f"{view.__qualname__} is guarded by {permission!r} but its URL has no "
                    "<community> argument"
                )
            if not has_permission(request, permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapper.community_permission = permission
        return wrapper

    return decorator
