"""The life of a membership: accepting an owner invitation, leaving an installation, asking for
access and answering such requests, and the community's audit log."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from sparklin.confirm import Confirmation, confirm, render_confirmation
from sparklin.http import CommunityRequest

from .. import invitations, services
from ..forms import AccessRequestForm
from ..models import AccessRequest, AuditEvent
from ..permissions import community_permission


def invitation_accept(request, token):
    """The link of an owner invitation: log in first (SMS code), then accept. Used, expired,
    cancelled or forged links get a clear page and change nothing."""
    invitation = invitations.find_invitation(token)
    problem = invitations.invitation_problem(invitation)
    if problem:
        return render(
            request, "communities/invitation_invalid.html", {"problem": problem}, status=404
        )
    if not request.user.is_authenticated:
        # A person without an account (or not logged in): the code goes to the invited number.
        return redirect("accounts:invitation-start", token=token)
    if request.method == "POST":
        try:
            membership = invitations.accept_invitation(token=token, user=request.user)
        except services.CommunityError as e:
            return render(
                request, "communities/invitation_invalid.html", {"problem": e.message}, status=400
            )
        messages.success(
            request, _("You are now the owner of %(name)s.") % {"name": membership.community}
        )
        return redirect("communities:dashboard", community=membership.community.slug)
    return render(request, "communities/invitation_accept.html", {"invitation": invitation})


@community_permission("community:leave")
def leave(request: CommunityRequest, community):
    membership = request.membership
    if membership is None:  # "community:leave" is for members; an installer is none
        raise PermissionDenied
    confirmation = Confirmation(
        title=_("Leave %(name)s?") % {"name": request.community.name},
        consequences=[
            _("Your cards stop working here."),
            _(
                "The other members no longer see your name on your past sessions. You keep "
                "your Sparklin account."
            ),
            _("To come back, you will need a manager to add you again."),
        ],
        button=_("Leave"),
        cancel_url=reverse("communities:dashboard", kwargs={"community": community}),
        scope="community.leave",
    )
    if membership.role == "owner" and not services._other_owners(membership).exists():
        confirmation.consequences.insert(
            0,
            _("You are the only owner of %(community)s: transfer the ownership before leaving.")
            % {"community": request.community},
        )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        services.leave_community(membership=membership, actor=request.user)
    except services.CommunityError as e:
        messages.error(request, e.message)
        return redirect("communities:leave", community=community)
    messages.success(request, _("You left %(name)s.") % {"name": request.community})
    return redirect("home")


@login_required
def access_request_create(request):
    form = AccessRequestForm(request.POST or None, initial={"community": request.GET.get("c", "")})
    if request.method == "POST" and form.is_valid():
        try:
            services.request_access(
                user=request.user,
                slug=form.cleaned_data["community"],
                message=form.cleaned_data["message"],
            )
        except services.CommunityError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Your request was sent to the installation's managers."))
            return redirect("access-request-create")
    return render(request, "communities/access_request_form.html", {"form": form})


@community_permission("access_requests:decide")
def access_request_list(request: CommunityRequest, community):
    requests = AccessRequest.objects.select_related("user", "decided_by")
    return render(
        request,
        "communities/access_request_list.html",
        {
            "pending": requests.filter(state=AccessRequest.State.PENDING),
            "answered": requests.exclude(state=AccessRequest.State.PENDING)[:20],
        },
    )


@community_permission("access_requests:decide")
@require_POST
def access_request_decide(request: CommunityRequest, community, access_request):
    access_request = get_object_or_404(
        AccessRequest.objects.select_related("user"), pk=access_request
    )
    accept = request.POST.get("decision") == "accept"
    try:
        services.decide_access_request(
            access_request=access_request, actor=request.user, accept=accept
        )
    except services.CommunityError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Request accepted.") if accept else _("Request refused."))
    return redirect("communities:access-request-list", community=community)


@community_permission("audit:view")
def audit_log(request: CommunityRequest, community):
    events = AuditEvent.objects.select_related("actor")[:200]
    return render(request, "communities/audit_log.html", {"events": events})
