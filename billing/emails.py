"""E-mails of the billing app: one function per kind over a subject/text/html triplet
(`templates/emails/expense_*`). They only build and send; `services` decides who gets what."""

import io

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.utils.translation import override

from . import formatting as fmt
from .exports import write_notes_csv
from .pdf import render_expense_note_pdf

# A send never hangs on a silent mail server: it fails, is recorded and retried, and the
# dispatch's claim (billing.dispatch.CLAIM_TIMEOUT, much longer) is released with it.
SMTP_TIMEOUT = 120


def _connection():
    return get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or SMTP_TIMEOUT)


def _pdf_of(note, language: str) -> bytes:
    """The stored PDF when it is in the wanted language, a fresh rendering otherwise."""
    if note.pdf and note.language == language:
        with note.pdf.open("rb") as f:
            return f.read()
    return render_expense_note_pdf(note, language)


def _note_rows(notes, language):
    return [
        {
            "note": n,
            "amount": fmt.money(n.amount, n.currency, language),
            "kwh": fmt.kwh(n.energy_wh, language),
            "replaces": n.replaces.number if n.replaces_id else "",
        }
        for n in notes
    ]


def send_finance_email(*, community, notes, to: str, language: str, year: int, month: int):
    """One e-mail to the expense-note recipient listing `notes`, each PDF attached, plus the CSV
    summary of the same notes."""
    total = sum((n.amount for n in notes), start=0)
    currency = notes[0].currency if notes else community.currency
    context = {
        "community": community,
        "month": fmt.month(year, month, language),
        "rows": _note_rows(notes, language),
        "total": fmt.money(total, currency, language),
        "count": len(notes),
        "site_url": settings.SITE_URL,
    }
    with override(language):
        subject = " ".join(render_to_string("emails/expense_finance_subject.txt", context).split())
        text = render_to_string("emails/expense_finance.txt", context)
        html = render_to_string("emails/expense_finance.html", context)
    message = EmailMultiAlternatives(
        subject, text, settings.DEFAULT_FROM_EMAIL, [to], connection=_connection()
    )
    message.attach_alternative(html, "text/html")
    for note in notes:
        message.attach(f"{note.number}.pdf", _pdf_of(note, language), "application/pdf")
    out = io.StringIO()
    write_notes_csv(out, notes)
    message.attach(
        f"expense-notes-{community.slug}-{year:04d}-{month:02d}.csv",
        out.getvalue(),
        "text/csv",
    )
    message.send()


def send_driver_email(*, note, to: str, language: str):
    """A driver's copy of their own note."""
    context = {
        "note": note,
        "month": fmt.month(note.year, note.month, language),
        "amount": fmt.money(note.amount, note.currency, language),
        "kwh": fmt.kwh(note.energy_wh, language),
        "site_url": settings.SITE_URL,
    }
    with override(language):
        subject = " ".join(render_to_string("emails/expense_driver_subject.txt", context).split())
        text = render_to_string("emails/expense_driver.txt", context)
        html = render_to_string("emails/expense_driver.html", context)
    message = EmailMultiAlternatives(
        subject, text, settings.DEFAULT_FROM_EMAIL, [to], connection=_connection()
    )
    message.attach_alternative(html, "text/html")
    message.attach(f"{note.number}.pdf", _pdf_of(note, language), "application/pdf")
    message.send()
