"""Roles live in the database (Membership.role); permissions are strings in code, checked by one
decorator. An unknown permission string fails at import, so a typo can never open a view."""

from functools import wraps

from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from .models import Role

_MANAGERS = {Role.OWNER, Role.MANAGER}
_EVERYONE = {Role.OWNER, Role.MANAGER, Role.INDIVIDUAL}

PERMISSIONS: dict[str, set[str]] = {
    "community:view": _EVERYONE,  # dashboard, own sessions and cards
    "community:manage": _MANAGERS,  # company configuration: price, expense e-mail, name
    "members:view": _MANAGERS,
    "members:write": _MANAGERS,
    "sites:view": _MANAGERS,
    "sites:write": _MANAGERS,
    "outlets:view": _EVERYONE,  # is an outlet free? drivers need to know too
    "chargers:view": _MANAGERS,
    "chargers:write": _MANAGERS,
    "cards:write": _MANAGERS,
    "sessions:view_all": _MANAGERS,
    "exports:run": _MANAGERS,
}


def role_has(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


def has_permission(request, permission: str) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and role_has(membership.role, permission)


def community_permission(permission: str):
    """Guard a view under /c/<community>/…: the middleware has already resolved the community,
    entered its scope and answered 404 to non-members; this answers 403 to members whose role
    lacks `permission`."""
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
