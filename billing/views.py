"""Price history, exports (Tools tab) and expense notes: the month list with sending states,
ZIP exports with a progress partial, "send now", re-sending, drivers' own notes."""

from django.contrib import messages
from django.db.models import Prefetch
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling
from django_scopes import scope

from communities.permissions import community_permission, has_permission
from communities.templatetags.portal import price as price_filter
from sparklin.confirm import Confirmation, confirm, render_confirmation

from . import dispatch, export_jobs, prices, services
from .exports import iter_sessions_csv
from .forms import ExportForm, IdForm, NoteResendForm, NotesMonthsForm, PriceForm
from .models import ExpenseNote, ExpenseRun, ExportJob, NoteDispatch, Price
from .months import months_q
from .pdf import render_expense_note_pdf


def _price_page(request, form, price=None, status=200):
    return render(
        request,
        "billing/price_form.html",
        {"form": form, "price": price},
        status=status,
    )


@community_permission("community:manage")
def price_add(request, community):
    """Add a price (from the configuration page, or this page when the form has errors)."""
    form = PriceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            prices.set_price(community=request.community, actor=request.user, **_price_data(form))
        except prices.PriceError as e:
            form.add_error(None, e.message)
        else:
            messages.success(
                request, _("New price saved. Sessions already recorded keep their price.")
            )
            return redirect("communities:settings", community=community)
    return _price_page(request, form, status=400 if form.is_bound else 200)


def _price_data(form):
    return {k: form.cleaned_data[k] for k in ("valid_from", "price_per_kwh")}


@community_permission("community:manage")
def price_edit(request, community, price):
    price = get_object_or_404(Price, pk=price)
    if prices.price_used(price):
        messages.error(request, _("This price has already priced sessions: it cannot be changed."))
        return redirect("communities:settings", community=community)
    initial = {"valid_from": price.valid_from, "price_per_kwh": price.price_per_kwh}
    form = PriceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            prices.update_price(price=price, actor=request.user, **_price_data(form))
        except prices.PriceError as e:
            form.add_error(None, e.message)
        else:
            messages.success(request, _("Price corrected."))
            return redirect("communities:settings", community=community)
    return _price_page(request, form, price, status=400 if form.is_bound else 200)


@community_permission("community:manage")
def price_delete(request, community, price):
    price = get_object_or_404(Price, pk=price)
    settings_url = reverse("communities:settings", kwargs={"community": community})
    if prices.price_used(price):
        messages.error(request, _("This price has already priced sessions: it cannot be removed."))
        return redirect(settings_url)
    confirmation = Confirmation(
        title=_("Remove this price"),
        question=_("Remove the price of %(price)s from %(date)s?")
        % {
            "price": price_filter(price.price_per_kwh, request.community.currency),
            "date": date_format(price.valid_from, "SHORT_DATE_FORMAT"),
        },
        consequences=[
            _("Sessions starting from this date will use the previous price, or none."),
        ],
        button=_("Remove the price"),
        cancel_url=settings_url,
    )
    confirmed, form = confirm(request, confirmation)
    if not confirmed:
        return render_confirmation(request, confirmation, form)
    try:
        prices.delete_price(price=price, actor=request.user)
    except prices.PriceError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Price removed."))
    return redirect(settings_url)


def _month_rows(community, runs):
    """For the Tools tab: each run month with its current notes and their sending states
    (3 queries whatever the number of notes)."""
    runs = list(runs)
    notes = (
        ExpenseNote.objects.filter(months_q([(r.year, r.month) for r in runs]))
        .filter(is_current=True)
        .select_related("replaces")
        .prefetch_related(Prefetch("dispatches", queryset=NoteDispatch.objects.all()))
        .order_by("sequence")
    )
    by_month: dict = {}
    for note in notes:
        by_month.setdefault((note.year, note.month), []).append(note)
    rows = []
    for run in runs:
        month_notes = by_month.get((run.year, run.month), [])
        rows.append(
            {
                "run": run,
                "label": f"{run.year:04d}-{run.month:02d}",
                "notes": month_notes,
                "amount": sum((n.amount for n in month_notes), start=0),
                "failed": sum(
                    1
                    for n in month_notes
                    for d in n.dispatches.all()
                    if d.status == NoteDispatch.Status.FAILED
                ),
                "unsent": sum(
                    1
                    for n in month_notes
                    if getattr(n.finance_dispatch, "status", None)
                    not in (NoteDispatch.Status.SENT, NoteDispatch.Status.FAILED)
                ),
            }
        )
    return rows


def _tools_context(request, *, form=None, notes_form=None, job=None):
    context = {"form": form or ExportForm()}
    if has_permission(request, "notes:manage"):
        community = request.community
        context.update(
            notes_form=notes_form or NotesMonthsForm(community=community),
            month_rows=_month_rows(community, ExpenseRun.objects.order_by("-year", "-month")[:12]),
            no_recipient=dispatch.no_recipient_message() if not community.expense_email else "",
            job=job,
        )
    return context


@community_permission("exports:run")
def export_list(request, community):
    job = None
    if "job" in request.GET and has_permission(request, "notes:manage"):
        ids = IdForm({"id": request.GET["job"]})
        if ids.is_valid():
            job = ExportJob.objects.filter(pk=ids.cleaned_data["id"]).first()
    return render(request, "billing/export_list.html", _tools_context(request, job=job))


@community_permission("exports:run")
def export_sessions(request, community):
    form = ExportForm(request.GET)
    if not form.is_valid():
        return render(
            request, "billing/export_list.html", _tools_context(request, form=form), status=400
        )
    year, month = form.cleaned_data["month"]
    response = StreamingHttpResponse(
        _in_scope(request.community, iter_sessions_csv, year=year, month=month),
        content_type="text/csv; charset=utf-8",
    )
    filename = f"sessions-{request.community.slug}-{year:04d}-{month:02d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _in_scope(community, chunks, **kwargs):
    """A streamed body is produced after the view returned, outside the middleware's scope:
    its queries run in the community's scope again, in the language of the request."""
    language = translation.get_language()

    def body():
        with scope(community=community), translation.override(language):
            yield from chunks(community=community, **kwargs)

    return body()


@community_permission("notes:manage")
@require_POST
def notes_action(request, community):
    """Tools tab: ZIP of the chosen months (a task; the page shows its progress) or send now."""
    form = NotesMonthsForm(request.POST, community=request.community)
    if not form.is_valid():
        context = _tools_context(request, notes_form=form)
        return render(request, "billing/export_list.html", context, status=400)
    months = form.cleaned_data["months"]
    try:
        if form.cleaned_data["action"] == NotesMonthsForm.SEND:
            dispatch.request_send(community=request.community, actor=request.user, months=months)
            messages.success(request, _("The notes of the chosen months are being sent."))
            return redirect("billing:export-list", community=community)
        job = export_jobs.start_export(
            community=request.community, actor=request.user, months=months
        )
    except services.BillingError as e:
        messages.error(request, e.message)
        return redirect("billing:export-list", community=community)
    if request.htmx:
        job.refresh_from_db()
        return render(request, "billing/export_list.html#export-job", {"job": job})
    return redirect(reverse("billing:export-list", args=[community]) + f"?job={job.pk}")


def _object_id(request, name):
    form = IdForm({"id": request.GET.get(name) or request.POST.get(name)})
    return form.cleaned_data["id"] if form.is_valid() else None


@community_permission("notes:manage")
def export_job(request, community):
    """The progress partial, polled by htmx until the job is finished (then 286 stops it)."""
    job_id = _object_id(request, "job")
    if job_id is None:
        return HttpResponseBadRequest()
    job = get_object_or_404(ExportJob, pk=job_id)
    if not request.htmx:
        return redirect(reverse("billing:export-list", args=[community]) + f"?job={job.pk}")
    response = render(request, "billing/export_list.html#export-job", {"job": job})
    if job.finished:
        return HttpResponseStopPolling(response.content)
    return response


@community_permission("notes:manage")
def export_download(request, community):
    job_id = _object_id(request, "job")
    if job_id is None:
        return HttpResponseBadRequest()
    job = get_object_or_404(ExportJob, pk=job_id, status=ExportJob.Status.DONE)
    name = job.file.name.rsplit("/", 1)[-1]
    return FileResponse(job.file.open("rb"), as_attachment=True, filename=name)


@community_permission("notes:manage")
@require_POST
def note_resend(request, community):
    form = NoteResendForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest()
    note = get_object_or_404(ExpenseNote, pk=form.cleaned_data["note"])
    try:
        dispatch.resend_note(note=note, kind=form.cleaned_data["kind"], actor=request.user)
    except services.BillingError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, _("Note %(number)s sent again.") % {"number": note.number})
    return redirect("billing:export-list", community=community)


@community_permission("notes:view_own")
def my_note_list(request, community):
    notes = (
        ExpenseNote.objects.filter(holder=request.user)
        .select_related("replaces")
        .order_by("-year", "-month", "-version")
    )
    return render(request, "billing/note_list.html", {"notes": notes})


@community_permission("notes:view_own")
def note_download(request, community):
    """A note's PDF: managers any note of the community, drivers their own (in their language);
    anything else answers 404, like an id from another community."""
    note_id = _object_id(request, "note")
    if note_id is None:
        return HttpResponseBadRequest()
    note = get_object_or_404(ExpenseNote, pk=note_id)
    own = note.holder_id == request.user.pk
    if not own and not has_permission(request, "notes:manage"):
        raise Http404
    if (own and request.user.language != note.language) or not note.pdf:
        # Not stored yet (its task is still queued) or wanted in another language: render it.
        data = render_expense_note_pdf(note, request.user.language if own else None)
    else:
        with note.pdf.open("rb") as f:
            data = f.read()
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{note.number}.pdf"'
    return response
