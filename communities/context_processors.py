from .access import user_company
from .middleware import user_communities
from .permissions import PERMISSIONS, request_role, role_has


def community(request):
    role = request_role(request)
    perms = {p for p in PERMISSIONS if role and role_has(role, p)}
    user = getattr(request, "user", None)
    return {
        "community": getattr(request, "community", None),
        "membership": getattr(request, "membership", None),
        "community_role": role,
        "community_perms": perms,
        "my_communities": user_communities(user) if user is not None else [],
        "my_installer_company": user_company(user) if user is not None else None,
    }
