"""The "Report a problem" page (any logged-in person) and the screenshot, served to staff only."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from sparklin.http import PortalRequest

from . import services
from .forms import ReportForm
from .models import Ticket


@login_required
def report(request: PortalRequest) -> HttpResponse:
    """Description, phone (prefilled with the person's), a screenshot; the page it was opened
    from travels as `?from=` and is kept with the ticket."""
    initial = {"phone": request.user.phone, "page": request.GET.get("from", "")}
    form = ReportForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            ticket = services.report_problem(
                user=request.user,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                **form.cleaned_data,
            )
        except services.SupportError as e:
            form.add_error(None, e.message)
        else:
            messages.success(
                request,
                _("Thank you: your report #%(number)s was sent to Sparklin support.")
                % {"number": ticket.pk},
            )
            return redirect(form.cleaned_data["page"] or "home")
    return render(
        request, "support/report_form.html", {"form": form}, status=400 if form.errors else 200
    )


@staff_member_required
def screenshot(request: PortalRequest, ticket: int) -> FileResponse:
    """A ticket's screenshot, for platform staff only (linked from the admin)."""
    obj = get_object_or_404(Ticket, pk=ticket)
    if not obj.screenshot:
        raise Http404
    response = FileResponse(
        obj.screenshot.open("rb"), filename=obj.screenshot.name.rsplit("/", 1)[-1]
    )
    response["Content-Type"] = "image/jpeg" if obj.screenshot.name.endswith(".jpg") else "image/png"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response
