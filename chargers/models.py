"""Chargers and what they report: connectors (outlets), cards, charging sessions, meter samples,
commands sent to them and the OCPP message log. Every row carries its community."""

import re
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from communities.models import Community, InstallerCompany, Membership, Site, scoped_manager


class Vendor(models.TextChoices):
    SPARK1 = "spark1", "Spark 1"
    ZAPTEC = "zaptec", "Zaptec"
    VOLTTIME = "volttime", "Volt Time"
    OTHER = "other", _("Other OCPP charger")


class OcppVersion(models.TextChoices):
    V16 = "1.6", "OCPP 1.6J"
    V201 = "2.0.1", "OCPP 2.0.1"


class Charger(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="chargers")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="chargers")
    # The charge point identity in ws://…/ocpp/<identity>: the serial number, globally unique.
    identity = models.CharField(_("serial number"), max_length=48, unique=True)
    name = models.CharField(_("name"), max_length=100, blank=True)
    vendor = models.CharField(
        _("vendor"), max_length=20, choices=Vendor.choices, default=Vendor.OTHER
    )
    model = models.CharField(_("model"), max_length=50, blank=True)
    # Django password hash (security profiles 1 and 2); empty means no password required.
    password_hash = models.CharField(max_length=128, blank=True)
    ocpp_version = models.CharField(
        _("OCPP version"), max_length=8, choices=OcppVersion.choices, blank=True
    )
    firmware_version = models.CharField(_("firmware"), max_length=50, blank=True)
    reported_vendor = models.CharField(max_length=50, blank=True)
    reported_model = models.CharField(max_length=50, blank=True)
    reported_serial = models.CharField(max_length=50, blank=True)
    connected = models.BooleanField(_("connected"), default=False)
    connected_since = models.DateTimeField(null=True, blank=True)
    # When `connected` last changed (connection, disconnection, offline sweep). Events carry
    # their own time and are applied only when newer, so batches processed out of order by
    # several workers cannot leave a charger shown connected after it dropped.
    connection_changed_at = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(_("last seen"), null=True, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    heartbeat_interval = models.PositiveIntegerField(default=300)
    firmware_status = models.CharField(_("firmware update status"), max_length=40, blank=True)
    # Set once the gateway has applied the product's configuration after a connection.
    configured_at = models.DateTimeField(null=True, blank=True)
    configuration = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by every save(): the gateways refresh their in-memory charger directory by delta on it
    # (ocpp_gateway.decisions.ChargerDirectory).
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The gateway process holding the connection (its instance id), written with `connected`.
    gateway = models.CharField(_("gateway"), max_length=100, blank=True)
    # The installer company that commissioned it (it keeps seeing it in its installer area),
    # and whether its serial + PIN were checked against the inventory at the claim.
    installer = models.ForeignKey(
        InstallerCompany,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chargers",
        verbose_name=_("installer company"),
    )
    from_inventory = models.BooleanField(_("claimed from the inventory"), default=False)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("charger")
        ordering = ["site__name", "identity"]

    def __str__(self):
        return self.name or self.identity

    # The columns the gateways keep in memory (ocpp_gateway.decisions.CHARGER_FIELDS).
    GATEWAY_FIELDS = frozenset(
        {
            "identity",
            "community",
            "community_id",
            "password_hash",
            "configured_at",
            "firmware_version",
            "heartbeat_interval",
            "vendor",
        }
    )

    def save(self, *args, **kwargs):
        # `updated_at` moves when a column the gateways hold changes (every full save, a partial
        # save naming one of them), not with the worker's last_seen/status writes: the
        # directory's delta stays a handful of rows however busy the fleet is.
        update_fields = kwargs.get("update_fields")
        if update_fields is None:
            self.updated_at = timezone.now()
        elif self.GATEWAY_FIELDS.intersection(update_fields):
            self.updated_at = timezone.now()
            if "updated_at" not in update_fields:
                kwargs["update_fields"] = [*update_fields, "updated_at"]
        super().save(*args, **kwargs)

    @property
    def awaiting_first_connection(self) -> bool:
        """Registered but never heard from: a charger outside the inventory is confirmed by its
        first connection with this identity."""
        return self.last_seen is None and not self.connected


class OutletState(models.TextChoices):
    """What people see; derived from the OCPP status and the connection itself."""

    CHARGING = "charging", _("Charging")
    AVAILABLE = "available", _("Available")
    NOT_CONNECTED = "not_connected", _("Not connected")
    FAULTED = "faulted", _("Faulted")
    RESERVED = "reserved", _("Reserved")
    UNAVAILABLE = "unavailable", _("Unavailable")


# OCPP 1.6 ChargePointStatus and 2.0.1 ConnectorStatusEnumType, to what people see.
OCPP_STATUS_TO_STATE = {
    "Available": OutletState.AVAILABLE,
    "Preparing": OutletState.CHARGING,
    "Charging": OutletState.CHARGING,
    "SuspendedEV": OutletState.CHARGING,
    "SuspendedEVSE": OutletState.CHARGING,
    "Finishing": OutletState.CHARGING,
    "Occupied": OutletState.CHARGING,
    "Reserved": OutletState.RESERVED,
    "Unavailable": OutletState.UNAVAILABLE,
    "Faulted": OutletState.FAULTED,
}


def outlet_state_q(state: str, prefix: str = "") -> models.Q:
    """Outlets (Connector rows, or rows reaching one through `prefix`) in the shown state, as
    `Connector.state` derives it: the same mapping, as a filter the database applies."""
    connected = models.Q(**{f"{prefix}charger__connected": True})
    if state == OutletState.NOT_CONNECTED:
        return ~connected
    statuses = [s for s, shown in OCPP_STATUS_TO_STATE.items() if shown == state]
    if state == OutletState.AVAILABLE:
        statuses.append("")  # not reported yet
    q = models.Q(**{f"{prefix}status__in": statuses})
    if state == OutletState.UNAVAILABLE:  # a status Sparklin does not know
        q |= ~models.Q(**{f"{prefix}status__in": [*OCPP_STATUS_TO_STATE, ""]})
    return connected & q


def outlet_state(connected: bool, status: str) -> str:
    """What people see for an outlet (the one mapping, also behind `outlet_state_q`)."""
    if not connected:
        return OutletState.NOT_CONNECTED
    return OCPP_STATUS_TO_STATE.get(
        status, OutletState.AVAILABLE if not status else OutletState.UNAVAILABLE
    )


# OCPP statuses in which a remote start makes sense ("" = not reported yet, shown available).
REMOTE_STARTABLE_STATUSES = frozenset({"", "Available", "Preparing", "Occupied"})


def outlet_number(evse_id: int, connector_id: int) -> str:
    """How an outlet is numbered on its charger, wherever it is printed (the portal, the CSV,
    the expense notes): its connector number, or "EVSE.connector" when the two differ (an
    OCPP 2.0.1 station with several connectors on one EVSE)."""
    return f"{evse_id}.{connector_id}" if evse_id != connector_id else str(connector_id)


class Connector(models.Model):
    """An outlet. 1.6 numbers connectors 1..n per charger; 2.0.1 numbers EVSEs and connectors
    within them: `evse_id` is the 2.0.1 EVSE (equal to `connector_id` for 1.6)."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="connectors")
    evse_id = models.PositiveIntegerField(default=1)
    connector_id = models.PositiveIntegerField(default=1)
    status = models.CharField(_("OCPP status"), max_length=20, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["charger", "evse_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "evse_id", "connector_id"], name="connector_unique_number"
            )
        ]

    def __str__(self):
        return f"{self.charger} #{outlet_number(self.evse_id, self.connector_id)}"

    @property
    def state(self) -> str:
        return outlet_state(self.charger.connected, self.status)

    def get_state_display(self):
        return OutletState(self.state).label

    @property
    def remote_startable(self) -> bool:
        """A charge can be started from the portal: the charger is connected and the outlet is
        free or has a car plugged in without a session yet (1.6 Preparing, 2.0.1 Occupied;
        callers also check that no session is in progress on it)."""
        return self.charger.connected and self.status in REMOTE_STARTABLE_STATUSES


# Separators people type or chargers print between the bytes of a UID: white space, colons and
# dashes.
_UID_SEPARATORS = re.compile(r"[\s:\-]+")


def normalize_card_uid(uid: str) -> str:
    """The one spelling of a card UID, the only one stored: upper case, without white space,
    colons or dashes. `04:a2:3b-11` typed in the portal, `04A23B11` sent by a 1.6
    charger as idTag and the same UID sent by a 2.0.1 station as an idToken of any type
    (ISO14443, ISO15693, Local, Central…: the type is never part of the card) are one card;
    `DEMO-CARD-01` and `DEMOCARD01` too."""
    return _UID_SEPARATORS.sub("", uid or "").upper()


def card_uid_spellings(uid: str) -> list[str]:
    """What to look up for a presented uid. Since chargers 0007 every stored uid is normalised
    (`ChargeCard.save`, and a check constraint for writes that bypass it), so this is the normal
    form alone; kept as a list for the worker's batched lookups."""
    normal = normalize_card_uid(uid)
    return [normal] if normal else []


def uid_is_normal_q() -> models.Q:
    """The stored uid is its own normal form (upper case, no separator): the check constraint."""
    q = models.Q(uid=Upper("uid"))
    for separator in (" ", ":", "-", "\t", "\n"):
        q &= ~models.Q(uid__contains=separator)
    return q


class ChargeCardQuerySet(models.QuerySet):
    def with_last_use(self):
        """Each card with `last_used_at`: the start of its latest session."""
        return self.annotate(last_used_at=models.Max("sessions__started_at"))


class ChargeCard(models.Model):
    """An RFID card (1.6 idTag, 2.0.1 idToken). The uid is stored normalised
    (`normalize_card_uid`), unique per community on that form: the same card typed with
    separators or sent with another token type is one card. A card with no holder was freed (its
    holder deleted their account) and can be given to someone again."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="cards")
    uid = models.CharField(_("card UID"), max_length=36)
    name = models.CharField(_("name"), max_length=100, blank=True)
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cards",
        verbose_name=_("holder"),
    )
    active = models.BooleanField(_("active"), default=True)
    # The last day the card works, in the community's time zone (none: no expiry).
    expires_on = models.DateField(_("expires on"), null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager(ChargeCardQuerySet)

    class Meta:
        ordering = ["name", "uid"]
        constraints = [
            models.UniqueConstraint(fields=["community", "uid"], name="card_unique_uid"),
            models.CheckConstraint(condition=uid_is_normal_q(), name="card_uid_normalised"),
        ]

    def __str__(self):
        return self.name or self.uid

    def save(self, *args, **kwargs):
        self.uid = normalize_card_uid(self.uid)
        super().save(*args, **kwargs)

    @property
    def is_expired(self) -> bool:
        return self.expired()

    def expired(self, today=None) -> bool:
        """Past its expiry date in the community's time zone."""
        if self.expires_on is None:
            return False
        if today is None:
            today = timezone.localtime(timezone.now(), self.community.tz).date()
        return today > self.expires_on

    @property
    def authorization_status(self) -> str:
        """What a charger is told when this card is presented: Accepted for an active card
        whose holder is a current member of the card's community, Expired past its expiry date,
        Blocked otherwise (inactive card, holder removed from the community, no holder)."""
        if not self.active or self.holder_id is None:
            return AuthorizationStatus.BLOCKED
        current = (
            Membership.objects.with_scopes_disabled()
            .current()
            .filter(community_id=self.community_id, user_id=self.holder_id)
            .exists()
        )
        if not current:
            return AuthorizationStatus.BLOCKED
        if self.expired():
            return AuthorizationStatus.EXPIRED
        return AuthorizationStatus.ACCEPTED


class AuthorizationStatus(models.TextChoices):
    """OCPP 1.6 AuthorizationStatus / 2.0.1 AuthorizationStatusEnumType values we answer."""

    ACCEPTED = "Accepted", _("Accepted")
    BLOCKED = "Blocked", _("Blocked")
    EXPIRED = "Expired", _("Expired")
    INVALID = "Invalid", _("Unknown card")


def card_decision(community_id: int, uid: str) -> dict:
    """The authorization answer for `uid` presented on a charger of `community_id`, as JSON
    scalars (the gateway caches it): {"status", "card_id", "holder_id"}. Unknown → Invalid."""
    card = (
        ChargeCard.objects.with_scopes_disabled()
        .select_related("community")
        .filter(community_id=community_id, uid__in=card_uid_spellings(uid))
        .first()
    )
    if card is None:
        return {"status": AuthorizationStatus.INVALID.value, "card_id": None, "holder_id": None}
    return {
        "status": str(card.authorization_status),
        "card_id": card.pk,
        "holder_id": card.holder_id,
    }


class AccessStamp(models.Model):
    """A counter per community that moves with every change of who may charge (cards, and the
    rules of use in `rules`): the gateways compare it every few seconds with the one their
    cached decisions were built from, and the local authorization lists of the chargers are
    re-sent when it moved. Written by `chargers.stamps.changed` inside the change's
    transaction."""

    community = models.OneToOneField(
        Community, on_delete=models.CASCADE, related_name="access_stamp"
    )
    version = models.PositiveBigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    def __str__(self):
        return f"{self.community_id} v{self.version}"


class Anomaly(models.TextChoices):
    STOP_WITHOUT_START = "stop_without_start", _("Stop received for a start never recorded")
    CLOSED_NEW_TRANSACTION = (
        "closed_new_transaction",
        _("Closed by Sparklin: a new session started on this outlet"),
    )
    CLOSED_REBOOT = "closed_reboot", _("Closed by Sparklin: the charger restarted")


# Anomalies of sessions Sparklin closed itself: the charger's own stop still completes them.
AUTO_CLOSED = frozenset({Anomaly.CLOSED_NEW_TRANSACTION, Anomaly.CLOSED_REBOOT})


class ChargingSession(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", _("In progress")
        COMPLETED = "completed", _("Completed")

    # No index of their own (db_index=False): (community, started_at) and the unique
    # (charger, transaction_id) lead with them; every index is written at each new session
    # and at each update that cannot stay on its page.
    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="sessions", db_index=False
    )
    charger = models.ForeignKey(
        Charger, on_delete=models.PROTECT, related_name="sessions", db_index=False
    )
    connector = models.ForeignKey(
        Connector, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    # The id the charger knows: allocated by us for 1.6, chosen by the charger for 2.0.1.
    transaction_id = models.CharField(max_length=64)
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="charging_sessions",
    )
    card = models.ForeignKey(
        ChargeCard, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    id_tag = models.CharField(max_length=36, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    started_at = models.DateTimeField(null=True, blank=True, db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    meter_start_wh = models.DecimalField(max_digits=14, decimal_places=1, null=True, blank=True)
    meter_stop_wh = models.DecimalField(max_digits=14, decimal_places=1, null=True, blank=True)
    # Latest register reading seen while in progress (live energy), and its time: samples can
    # arrive out of order, only a newer one moves it.
    meter_last_wh = models.DecimalField(max_digits=14, decimal_places=1, null=True, blank=True)
    meter_last_at = models.DateTimeField(null=True, blank=True)
    energy_wh = models.DecimalField(max_digits=14, decimal_places=1, default=0)
    price_per_kwh = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    stop_reason = models.CharField(max_length=40, blank=True)
    offline = models.BooleanField(default=False)
    # Started on an outlet whose rules of use say "free charging for anyone" (the gateway's
    # decision at the start): priced 0 whatever the kWh price, shown as free, never billed.
    free = models.BooleanField(_("free charging"), default=False, db_default=False)
    # The highest 2.0.1 TransactionEvent seqNo seen (informative: samples are kept whatever
    # their seqNo, some chargers send 0 every time).
    last_seq_no = models.IntegerField(null=True, blank=True)
    # Something about this session did not come from the charger as OCPP intends, shown to
    # managers on the session: a stop for a transaction never seen starting, or a session
    # Sparklin closed itself (the charger started another one on the outlet, or rebooted).
    # A real stop arriving later for a session Sparklin closed still completes it.
    anomaly = models.CharField(
        _("anomaly"), max_length=30, choices=Anomaly.choices, blank=True, default=""
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "transaction_id"], name="session_unique_transaction"
            )
        ]
        indexes = [
            models.Index(fields=["community", "started_at"]),
            # The worker reads the sessions in progress of a batch's chargers at every start,
            # boot or meter value without a transaction: without scanning years of history.
            models.Index(
                fields=["charger"], condition=models.Q(state="active"), name="session_open"
            ),
        ]

    def __str__(self):
        return f"{self.charger} tx {self.transaction_id}"


class MeterSample(models.Model):
    # No database constraint: a sample's community is its session's, which the worker writes
    # from the charger it locked; PostgreSQL checking it again for every sample (the bulk of
    # the rows the worker writes) cost ~10 us of its CPU per event. Deleting a community still
    # deletes its samples (Django's cascade); the session's constraint stays.
    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    # Indexed by the unique (session, timestamp, measurand, phase) that leads with it: one index
    # less to write per sample.
    session = models.ForeignKey(
        ChargingSession, on_delete=models.CASCADE, related_name="samples", db_index=False
    )
    timestamp = models.DateTimeField()
    measurand = models.CharField(max_length=60, default="Energy.Active.Import.Register")
    phase = models.CharField(max_length=10, blank=True)
    context = models.CharField(max_length=30, blank=True)
    value = models.DecimalField(max_digits=16, decimal_places=3)
    unit = models.CharField(max_length=10, blank=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "timestamp", "measurand", "phase"], name="sample_unique"
            )
        ]

    def __str__(self):
        return f"{self.measurand} {self.value} {self.unit} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class ChargerCommand(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Failed")
        TIMED_OUT = "timed_out", _("Timed out")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="commands")
    # Stable reference shared by whoever creates the command (portal or gateway) and the gateway
    # reporting its progress: status updates are upserts by uid, so replays change nothing.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    action = models.CharField(max_length=60)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # Commands asked from the portal wait as *pending* rows until the gateway holding the charger
    # picks them up (ocpp_gateway.commands); those the gateway sends itself are only recorded.
    from_portal = models.BooleanField(default=False)
    asked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    response = models.JSONField(null=True, blank=True)
    # Remote start/stop asked by a driver: the outlet (and session) it is about, so the portal
    # shows its progress on the right row and refuses a second start while one is in flight.
    connector = models.ForeignKey(
        Connector, null=True, blank=True, on_delete=models.SET_NULL, related_name="commands"
    )
    session = models.ForeignKey(
        ChargingSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="commands"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "from_portal"], name="command_pending"),
            # The remote starts/stops still shown on the outlets (`REMOTE_COMMAND_SHOWN`):
            # read by every live poll, without scanning a fleet's history of commands.
            models.Index(fields=["community", "created_at"], name="command_recent"),
        ]

    def __str__(self):
        return f"{self.action} → {self.charger} ({self.status})"


class OcppMessage(models.Model):
    class Direction(models.TextChoices):
        IN = "in", _("Charger → Sparklin")
        OUT = "out", _("Sparklin → charger")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    # Indexed by (charger, -at) and the unique constraint, which lead with it.
    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_type = models.PositiveSmallIntegerField()  # 2 CALL, 3 CALLRESULT, 4 CALLERROR
    unique_id = models.CharField(max_length=64)
    action = models.CharField(max_length=60, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["charger", "-at"])]
        constraints = [
            # Makes re-processing a batch of log rows a no-op (bulk_create ignore_conflicts).
            models.UniqueConstraint(
                fields=["charger", "direction", "message_type", "unique_id", "at"],
                name="ocpp_message_unique",
            )
        ]

    def __str__(self):
        return f"{self.direction} {self.action or self.message_type} {self.unique_id}"


class UnknownChargerQuerySet(models.QuerySet):
    def purge(self, *, keep: int, days: int) -> int:
        """Age out refusals not seen for `days` days and keep at most the `keep` most recent:
        the table stays bounded whatever identities are tried. Returns the rows deleted."""
        deleted, _ = self.filter(last_seen__lt=timezone.now() - timedelta(days=days)).delete()
        cutoff = self.order_by("-last_seen", "-pk").values_list("last_seen", "pk")[keep : keep + 1]
        for last_seen, pk in cutoff:
            extra, _ = self.filter(
                models.Q(last_seen__lt=last_seen) | models.Q(last_seen=last_seen, pk__lte=pk)
            ).delete()
            deleted += extra
        return deleted


class QuarantinedEvents(models.Model):
    """Events of one charger the worker could not apply: a value refused before the database
    (an absurd meter register, an impossible time) or a permanent error (a DataError, an
    IntegrityError, a bug). The rest of their batch was recorded; these wait here, with the
    error and the events as the gateway sent them, until someone retries them (after a fix) or
    marks them resolved. Applying events is idempotent, so a retry is always safe."""

    class State(models.TextChoices):
        OPEN = "open", _("Open")
        RETRIED = "retried", _("Retry asked")
        RESOLVED = "resolved", _("Resolved")

    class Cause(models.TextChoices):
        INVALID = "invalid", _("Value refused")
        ERROR = "error", _("Recording failed")

    # Events kept per entry; later ones are counted, not kept (a charger repeating a bad value
    # every minute must not grow a row without bound).
    MAX_EVENTS = 200

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="quarantine")
    cause = models.CharField(max_length=10, choices=Cause.choices)
    error = models.TextField(_("error"))
    events = models.JSONField(default=list)
    count = models.PositiveIntegerField(_("events"), default=0)
    first_at = models.DateTimeField(_("first"))
    last_at = models.DateTimeField(_("last"))
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.OPEN, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager()

    class Meta:
        verbose_name = _("quarantined events")
        verbose_name_plural = _("quarantined events")
        ordering = ["-last_at"]
        indexes = [models.Index(fields=["charger", "state"])]

    def __str__(self):
        return f"{self.charger_id}: {self.count} × {self.error[:60]}"


class UnknownCharger(models.Model):
    """Connections refused at the handshake, counted: not tenant data until someone claims them.
    Bounded: the gateway rate-limits refusals per source address and the beat purges old rows
    (`chargers.tasks.purge_unknown_chargers`)."""

    class Reason(models.TextChoices):
        UNKNOWN = "unknown", _("Unknown identity")
        BAD_PASSWORD = "bad_password", _("Wrong password")
        BAD_SUBPROTOCOL = "bad_subprotocol", _("No supported OCPP version offered")

    identity = models.CharField(max_length=100)
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.UNKNOWN)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    remote_address = models.CharField(max_length=64, blank=True)

    objects = UnknownChargerQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["identity", "reason"], name="unknown_charger_unique")
        ]

    def __str__(self):
        return self.identity


class TransactionIdBlock(models.Model):
    """The 1.6 transactionId counter. Gateways reserve blocks of ids with one atomic UPDATE, so
    ids stay unique across restarts and across several gateway processes."""

    name = models.CharField(max_length=20, unique=True, default="ocpp16")
    next_value = models.BigIntegerField(default=1)

    def __str__(self):
        return f"{self.name}: next {self.next_value}"


class InventoryCharger(models.Model):
    """A charger we manufactured or imported (platform staff load it from CSV): its serial and the
    PIN on its sticker (hashed). An installer claims it by serial + PIN; a claim is final."""

    serial = models.CharField(_("serial number"), max_length=48, unique=True)
    pin_hash = models.CharField(max_length=128)
    vendor = models.CharField(_("vendor"), max_length=20, choices=Vendor.choices)
    model = models.CharField(_("model"), max_length=50, blank=True)
    imported_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    charger = models.OneToOneField(
        Charger, null=True, blank=True, on_delete=models.SET_NULL, related_name="inventory"
    )

    class Meta:
        verbose_name = _("inventory charger")
        ordering = ["serial"]

    def __str__(self):
        return self.serial


class TransactionStart(models.Model):
    """A 1.6 StartTransaction the gateway gave a transaction id: a retried start (same charger,
    connector, idTag, meterStart and timestamp — the charger lost the answer) gets the same id on
    any connection and any gateway. `start_key` is a digest of those fields. Written only by the
    gateway (`ocpp_gateway/starts.py`), which purges rows older than a few days."""

    start_key = models.CharField(max_length=64, unique=True)
    transaction_id = models.BigIntegerField()
    created_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.start_key[:12]}… → {self.transaction_id}"


class ConnectionInterval(models.Model):
    """One connection of a charger to a gateway, from the websocket opening to its end: the
    uptime history. Keyed by (charger, started_at) — the gateway's time of the `connected`
    event, which its `disconnected` event repeats — so the worker writes both ends as upserts, in
    any order, any number of times (`chargers.events.uptime`). An end the gateway never reported
    (it died, the socket went silent, the charger reconnected elsewhere) is estimated: the next
    connection's start, or the charger's last message at the offline sweep; a real disconnection
    arriving later replaces the estimate."""

    class End(models.TextChoices):
        DISCONNECTED = "disconnected", _("Disconnected")
        REPLACED = "replaced", _("Reconnected")
        SILENT = "silent", _("Went silent")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="connections")
    started_at = models.DateTimeField(_("connected"))
    ended_at = models.DateTimeField(_("disconnected"), null=True, blank=True)
    ended_by = models.CharField(max_length=20, choices=End.choices, blank=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "started_at"], name="connection_interval_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["charger"],
                condition=models.Q(ended_at__isnull=True),
                name="connection_interval_open",
            )
        ]

    def __str__(self):
        return f"{self.charger_id}: {self.started_at:%Y-%m-%d %H:%M:%S} → {self.ended_at or '…'}"


class SessionDay(models.Model):
    """The completed sessions of one community, day (local date of their start in the
    community's time zone) and site, summed: what the dashboard's totals and charts read
    instead of a year of sessions (`chargers/usage.py`, the one home of "energy and cost of a
    period"). PostgreSQL keeps it exact with statement-level triggers on the sessions table
    (migration 0007): every INSERT/UPDATE/DELETE of sessions, by the worker, the portal or a
    bulk load, subtracts what its old rows contributed and adds what its new rows do, in the
    same transaction; a charger moving to another site moves its history, a time-zone change
    rebuilds the community. No foreign-key constraints: rows are derived, and deleting a
    community must not depend on the order in which its sessions and these rows go."""

    community = models.ForeignKey(
        Community, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    site = models.ForeignKey(
        Site, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    day = models.DateField()
    sessions = models.IntegerField(default=0)
    energy_wh = models.DecimalField(max_digits=18, decimal_places=1, default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    objects = scoped_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["community", "day", "site"], name="session_day_unique")
        ]

    def __str__(self):
        return f"{self.day} site {self.site_id}: {self.sessions} sessions"


class LiveChange(models.Model):
    """The change counter of a community's live regions (outlets page, dashboard): the sum of
    `changes` over a community's rows grows by one with every committed statement that
    changes what they show — its sites, chargers (name, site, connection), outlets (status),
    sessions and remote commands. PostgreSQL keeps it with statement-level triggers (migration
    chargers 0013), so every writer (worker, portal, sweeps, admin, bulk loads) is counted
    without code of its own; each statement INSERTs a row per community it touched, so
    concurrent writers never wait for each other on it (a counter row updated in place would
    be locked by each writer until its commit). `chargers.tasks.compact_live_changes` folds a
    community's rows into one now and then, keeping their sum: a poll adds up a few rows
    whatever the fleet (`chargers.selectors.live_token`). A sum of commits, not a timestamp
    or a sequence's maximum, so a transaction committing after a later one is still seen."""

    community = models.ForeignKey(
        Community, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    changes = models.BigIntegerField(default=1)

    objects = scoped_manager()

    def __str__(self):
        return f"community {self.community_id}: +{self.changes}"
