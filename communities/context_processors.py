from .access import user_company
from .middleware import user_communities
from .permissions import Can, request_role


def community(request):
    role = request_role(request)
    can = Can(role)
    user = getattr(request, "user", None)
    return {
        "community": getattr(request, "community", None),
        "membership": getattr(request, "membership", None),
        # `{% if "members:write" in can %}`: the permission table, never a role name.
        "can": can,
        "community_perms": can,  # the former name, kept while templates move to `can`
        "my_communities": user_communities(user) if user is not None else [],
        "my_installer_company": user_company(user) if user is not None else None,
    }
