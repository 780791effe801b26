from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from .middleware import user_communities


@login_required
def home(request):
    first = user_communities(request.user).first()
    if first is None:
        return redirect("communities:community-create")
    return redirect("communities:dashboard", community=first.slug)
