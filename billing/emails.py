"""E-mails of the billing app: one function per kind over a subject/text/html triplet
(`templates/emails/expense_*`). They only build and send; `services` decides who gets what.

In a worker, consecutive e-mails share one SMTP connection (a month-end run sends one per
driver, one after the other): opening one costs a TCP and, in production, a TLS handshake plus
the greeting, more than handing the server a small message. The connection kept by a worker
thread is checked (`NOOP`) before it is reused and replaced when the server dropped it, when
it was idle longer than `SMTP_KEEP_SECONDS`, or when a send on it failed; a failed send is
never repeated here (the dispatch records it and its task retries). Outside a worker (a web
request, tasks run in-process) each e-mail opens and closes its own, as before."""

import io
import smtplib
import threading
import time

from celery import current_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.template.loader import render_to_string
from django.utils.translation import override

from . import formatting as fmt
from .exports import write_notes_csv
from .pdf import render_expense_note_pdf

# A send never hangs on a silent mail server: it fails, is recorded and retried, and the
# dispatch's claim (billing.dispatch.CLAIM_TIMEOUT, much longer) is released with it.
SMTP_TIMEOUT = 120


# A kept connection idle longer than this is closed rather than reused (mail servers drop idle
# clients after a few minutes: Postfix after 300 s).
SMTP_KEEP_SECONDS = 60

_kept = threading.local()


def _connection():
    return get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or SMTP_TIMEOUT)


def _in_worker() -> bool:
    """Inside a task run by a Celery worker (not in-process, not a web request)."""
    task = current_task
    return bool(task) and not task.request.is_eager


def _alive(connection: SMTPBackend) -> bool:
    try:
        return connection.connection is not None and connection.connection.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def _forget_kept() -> None:
    connection = getattr(_kept, "connection", None)
    _kept.connection = None
    if connection is not None:
        try:
            connection.close()  # QUIT, or just the socket when the server is gone
        except Exception:  # noqa: BLE001 - closing a broken connection must not fail a send
            pass


def _kept_connection(connection: SMTPBackend) -> SMTPBackend:
    """The thread's open SMTP connection to the same server, or `connection` opened now and
    kept for the next e-mail."""
    key = (connection.host, connection.port, connection.username, connection.use_tls,
           connection.use_ssl)  # fmt: skip
    kept = getattr(_kept, "connection", None)
    if kept is not None and (
        _kept.key != key or time.monotonic() - _kept.used_at > SMTP_KEEP_SECONDS or not _alive(kept)
    ):
        _forget_kept()
        kept = None
    if kept is None:
        connection.open()  # an OSError here is the send's failure, recorded by the caller
        _kept.connection, _kept.key = connection, key
        kept = connection
    _kept.used_at = time.monotonic()
    return kept


def _send(message: EmailMultiAlternatives) -> None:
    """Send over the thread's kept connection in a worker, over a new one elsewhere."""
    connection = _connection()
    if not isinstance(connection, SMTPBackend) or not _in_worker():
        message.connection = connection
        message.send()
        return
    message.connection = _kept_connection(connection)
    try:
        message.send()
    except BaseException:
        _forget_kept()  # in an unknown state after a failure: the next e-mail opens another
        raise


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


def finance_parts(notes) -> list[list]:
    """`notes` in order, cut into the parts of the finance e-mail: each part's PDFs add up to at
    most EXPENSE_NOTES_FINANCE_PART_MB (a note larger than that travels alone)."""
    limit = settings.EXPENSE_NOTES_FINANCE_PART_MB * 1_000_000
    parts: list[list] = []
    size = 0
    for note in notes:
        pdf_size = note.pdf.size if note.pdf else 0
        if not parts or (parts[-1] and size + pdf_size > limit):
            parts.append([])
            size = 0
        parts[-1].append(note)
        size += pdf_size
    return parts


def send_finance_email(
    *,
    community,
    notes,
    to: str,
    language: str,
    year: int,
    month: int,
    part: int = 1,
    parts: int = 1,
    summary=None,
):
    """One e-mail to the expense-note recipient listing `notes`, each PDF attached, plus the CSV
    summary of `summary` (the notes of every part; `notes` when the e-mail is not split). Part
    `part` of `parts` says so in its subject and text."""
    summary = notes if summary is None else summary
    total = sum((n.amount for n in summary), start=0)
    currency = notes[0].currency if notes else community.currency
    context = {
        "community": community,
        "month": fmt.month(year, month, language),
        "rows": _note_rows(notes, language),
        "total": fmt.money(total, currency, language),
        "count": len(summary),
        "part": part,
        "parts": parts,
        "site_url": settings.SITE_URL,
    }
    with override(language):
        subject = " ".join(render_to_string("emails/expense_finance_subject.txt", context).split())
        text = render_to_string("emails/expense_finance.txt", context)
        html = render_to_string("emails/expense_finance.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    for note in notes:
        message.attach(f"{note.number}.pdf", _pdf_of(note, language), "application/pdf")
    out = io.StringIO()
    write_notes_csv(out, summary)
    message.attach(
        f"expense-notes-{community.slug}-{year:04d}-{month:02d}.csv",
        out.getvalue(),
        "text/csv",
    )
    _send(message)


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
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    message.attach(f"{note.number}.pdf", _pdf_of(note, language), "application/pdf")
    _send(message)
