from .middleware import user_communities
from .permissions import PERMISSIONS, role_has


def community(request):
    membership = getattr(request, "membership", None)
    perms = {p for p in PERMISSIONS if membership and role_has(membership.role, p)}
    return {
        "community": getattr(request, "community", None),
        "membership": membership,
        "community_perms": perms,
        "my_communities": user_communities(request.user) if hasattr(request, "user") else [],
    }
