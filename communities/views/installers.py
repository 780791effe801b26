"""The installer area (/installer/…, across the company's installations), hand-over invitations
and the owner's control of installer access (/c/<community>/…)."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_scopes import scopes_disabled

from chargers.models import Charger
from sparklin.confirm import PHRASE, Confirmation, confirm, render_confirmation
from sparklin.http import CommunityRequest

from .. import installers, invitations
from ..access import company_role
from ..forms import CompanyMemberForm, GrantAccessForm, InstallationForm, OwnerInvitationForm
from ..models import AccessGrant, InstallerCompany, Invitation
from ..permissions import community_permission, has_permission
from ..services import CommunityError

_SESSION_LINK = "invitation_link"


def installer_required(view):
    """Installer-area pages: members of an installer company only (others get 404). They read
    across the company's installations, so they run with scopes disabled on purpose."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        member = installers.company_membership(request.user)
        if member is None:
            raise Http404("Not an installer")
        request.installer_member = member
        with scopes_disabled():
            return view(request, *args, **kwargs)

    return wrapper


@installer_required
def installer_home(request):
    company = request.installer_member.company
    installations = [
        (c, company_role(c, company)) for c in installers.company_installations(company)
    ]
    # Chargers the company commissioned: it keeps what it needs to support them (serial, model,
    # firmware, connected or not); the installation's name and site only while a grant is in
    # force there: (charger, granted) pairs.
    granted = {c.pk for c, _role in installations}
    chargers = [
        (charger, charger.community_id in granted)
        for charger in Charger.objects.filter(installer=company).select_related("community", "site")
    ]
    return render(
        request,
        "communities/installer_home.html",
        {
            "company": company,
            "installations": installations,
            "chargers": chargers,
            "members": company.members.select_related("user").order_by("user__last_name"),
        },
    )


@installer_required
def installation_create(request):
    form = InstallationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        site = installers.create_installation(
            actor=request.user, company=request.installer_member.company, **form.cleaned_data
        )
        messages.success(request, _("Installation %(name)s created.") % {"name": site.community})
        return redirect("chargers:charger-claim", community=site.community.slug, site=site.pk)
    return render(request, "communities/installation_form.html", {"form": form})


@installer_required
def company_member_add(request):
    form = CompanyMemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            member = installers.add_company_member(
                company=request.installer_member.company, actor=request.user, **form.cleaned_data
            )
        except CommunityError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("%(name)s joined the company.") % {"name": member.user})
            return redirect("installer-home")
    return render(request, "communities/company_member_form.html", {"form": form})


@community_permission("ownership:invite")
def owner_invite(request: CommunityRequest, community):
    form = OwnerInvitationForm(request.POST or None)
    transfer = has_permission(request, "ownership:transfer")
    confirmed, confirm_form = True, None
    if transfer:
        # Giving one's installation away: the owner types its name (sparklin/confirm.py).
        confirmed, confirm_form = confirm(
            request,
            Confirmation(
                title=_("Transfer the ownership"),
                button=_("Send the invitation"),
                cancel_url="",
                method=PHRASE,
                phrase=request.community.name,
                scope="ownership.transfer",
            ),
        )
    if request.method == "POST" and form.is_valid() and confirmed:
        try:
            invitation, token = invitations.invite_owner(
                community=request.community,
                actor=request.user,
                email=form.cleaned_data["email"],
                phone=str(form.cleaned_data["phone"] or ""),
            )
        except CommunityError as e:
            form.add_error(None, e.message)
        else:
            # The link exists only now: shown once (with its QR code) on the next page.
            request.session[_SESSION_LINK] = invitations.invitation_url(token)
            messages.success(request, _("Invitation sent."))
            return redirect("communities:owner-invite", community=community)
    link = request.session.pop(_SESSION_LINK, None)
    context = {
        "form": form,
        "confirm_form": confirm_form,
        "link": link,
        "qr": invitations.qr_svg(link) if link else None,
        "invitations": Invitation.objects.select_related("created_by")[:10],
    }
    return render(request, "communities/owner_invite.html", context)


@community_permission("ownership:invite")
@require_POST
def owner_invite_revoke(request: CommunityRequest, community, invitation):
    invitation = get_object_or_404(Invitation, pk=invitation)
    invitations.revoke_invitation(invitation=invitation, actor=request.user)
    messages.success(request, _("Invitation cancelled."))
    return redirect("communities:owner-invite", community=community)


@community_permission("installer_access:manage")
def installer_access(request: CommunityRequest, community):
    grants = AccessGrant.objects.select_related("company").order_by("-created_at")
    companies = InstallerCompany.objects.filter(grants__community=request.community).distinct()
    form = GrantAccessForm(request.POST or None, companies=companies)
    if request.method == "POST" and form.is_valid():
        try:
            installers.grant_access(
                community=request.community, actor=request.user, **form.cleaned_data
            )
        except CommunityError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Access given."))
            return redirect("communities:installer-access", community=community)
    return render(request, "communities/installer_access.html", {"form": form, "grants": grants})


@community_permission("installer_access:manage")
def installer_access_revoke(request: CommunityRequest, community, grant):
    grant = get_object_or_404(AccessGrant.objects.select_related("company"), pk=grant)
    confirmation = Confirmation(
        title=_("Revoke the access of %(company)s?") % {"company": grant.company.name},
        consequences=[
            _("Its installers no longer see this installation nor its chargers, from now on."),
            _("To give access again, you will have to grant it again."),
        ],
        button=_("Revoke the access"),
        cancel_url=reverse("communities:installer-access", kwargs={"community": community}),
        scope="grant.revoke",
    )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        installers.revoke_grant(grant=grant, actor=request.user)
    except CommunityError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Access revoked."))
    return redirect("communities:installer-access", community=community)
