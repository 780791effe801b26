"""What charging costs: the kWh price history of each community, and the monthly expense notes
built from the sessions (with their sending state and ZIP exports)."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from communities.models import Community, scoped_manager


class Price(models.Model):
    """A kWh price valid from `valid_from` (community local date) until the next one."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="prices")
    valid_from = models.DateField(_("valid from"))
    price_per_kwh = models.DecimalField(
        _("price per kWh"),
        max_digits=10,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    # Not a column: set on the prices billing.prices.price_history() lists, for the template
    # (whether sessions were priced with it).
    used: bool

    class Meta:
        ordering = ["-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["community", "valid_from"], name="price_unique_date")
        ]

    def __str__(self):
        return f"{self.price_per_kwh} from {self.valid_from}"


def _note_pdf_path(note, filename):
    return f"expense-notes/{note.community_id}/{note.year:04d}-{note.month:02d}/{filename}"


def _export_path(job, filename):
    return f"expense-exports/{job.community_id}/{filename}"


class ExpenseRun(models.Model):
    """One community-month of expense notes: when it was generated and when sessions were last
    compared with the issued notes. Its row is the lock that serialises generating and sending a
    month, so two workers (or the beat and a manager) never issue or send the same note twice."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    year = models.PositiveSmallIntegerField()
    month = models.PositiveSmallIntegerField()
    # Set by the month-end schedule and "send now": versions issued later are sent too.
    auto_send = models.BooleanField(default=False)
    # When the month-end schedule took this month (once, on the 1st after 06:00 local time).
    scheduled_at = models.DateTimeField(null=True, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    # Sessions updated after this are compared again with the issued notes (hourly check).
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        ordering = ["-year", "-month"]
        constraints = [
            models.UniqueConstraint(
                fields=["community", "year", "month"], name="expense_run_unique_month"
            )
        ]

    def __str__(self):
        return f"{self.community_id} {self.year:04d}-{self.month:02d}"


class ExpenseNote(models.Model):
    """One driver's completed sessions of one calendar month (community time zone), issued once
    and never changed: when the sessions change, a new version replaces it (`is_current`) and
    the old one is kept. Everything printed is a snapshot (names, address, lines), so a renamed
    site or a driver who left does not alter an issued note."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="expense_notes",
        verbose_name=_("driver"),
    )
    holder_name = models.CharField(_("driver"), max_length=200)
    year = models.PositiveSmallIntegerField()
    month = models.PositiveSmallIntegerField()
    # Per community-month number of the driver's note; every version keeps it.
    sequence = models.PositiveIntegerField()
    version = models.PositiveSmallIntegerField(_("version"), default=1)
    number = models.CharField(_("number"), max_length=100)
    is_current = models.BooleanField(default=True)
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by"
    )
    language = models.CharField(max_length=8)
    currency = models.CharField(max_length=3, default="EUR")
    time_zone = models.CharField(max_length=64)
    community_name = models.CharField(max_length=200)
    community_address = models.TextField(blank=True)
    lines = models.JSONField(default=list)
    session_count = models.PositiveIntegerField(_("sessions"), default=0)
    energy_wh = models.DecimalField(max_digits=16, decimal_places=1, default=0)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2, default=0)
    fingerprint = models.CharField(max_length=64)
    # Empty until the note's rendering task has stored it (billing.rendering).
    pdf = models.FileField(upload_to=_note_pdf_path, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    objects = scoped_manager()

    class Meta:
        ordering = ["-year", "-month", "sequence", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["community", "number"], name="expense_note_number"),
            models.UniqueConstraint(
                fields=["community", "holder", "year", "month", "version"],
                name="expense_note_unique_version",
            ),
            models.UniqueConstraint(
                fields=["community", "holder", "year", "month"],
                condition=models.Q(is_current=True),
                name="expense_note_one_current",
            ),
        ]
        indexes = [models.Index(fields=["community", "year", "month"])]

    def __str__(self):
        return self.number

    @property
    def month_label(self):
        return f"{self.year:04d}-{self.month:02d}"

    def dispatch(self, kind):
        """The dispatch of `kind` among prefetched `dispatches` (no query when prefetched)."""
        for d in self.dispatches.all():
            if d.kind == kind:
                return d
        return None

    @property
    def finance_dispatch(self):
        return self.dispatch(NoteDispatch.Kind.FINANCE)


class NoteDispatch(models.Model):
    """A note sent to one kind of recipient. The row exists before the e-mail leaves and is
    unique per (note, kind); a sender claims it (`claimed_at`) in a committed transaction before
    talking to the mail server, so a note is never e-mailed twice to the same kind of recipient,
    whoever sends the month (`billing.dispatch`)."""

    class Kind(models.TextChoices):
        FINANCE = "finance", _("Finance")
        DRIVER = "driver", _("Driver")

    class Status(models.TextChoices):
        PENDING = "pending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    note = models.ForeignKey(ExpenseNote, on_delete=models.CASCADE, related_name="dispatches")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    to_email = models.EmailField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set while a worker is sending it; cleared when it is marked sent or failed.
    claimed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["note", "kind"], name="note_dispatch_unique_kind")
        ]

    def __str__(self):
        return f"{self.note} → {self.kind} ({self.status})"


class ExportJob(models.Model):
    """A ZIP of expense notes for chosen months, built by a task; the page polls its progress."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        RUNNING = "running", _("In progress")
        DONE = "done", _("Ready")
        FAILED = "failed", _("Failed")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Stage(models.TextChoices):
        GENERATE = "generate", _("Issuing the notes")
        ZIP = "zip", _("Adding the PDFs")

    months = models.JSONField(default=list)  # ["2026-10", "2026-11"]
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.GENERATE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to=_export_path, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"export {self.pk} {self.months} ({self.status})"

    @property
    def percent(self):
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def finished(self):
        return self.status in (self.Status.DONE, self.Status.FAILED)
