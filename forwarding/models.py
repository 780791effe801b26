"""Third-party operators a charger's OCPP traffic is relayed to (issue 12).

Sparklin stays the charger's central system and records everything itself; an
`OperatorConnection` asks the gateway holding the charger to relay its traffic to another
central system (the operator's), in one of two roles (see `docs/architecture.md`, "Forwarding to
operators"). The gateway reports each connection's state and every frame it relays as events;
the worker writes them here (`forwarding.events`)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chargers.models import Charger
from communities.models import Community, scoped_manager


def validate_ws_url(value: str) -> None:
    """A websocket URL with a host: `ws://` or `wss://`, nothing else (no http, no file)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValidationError(
            _("Enter a websocket URL starting with ws:// or wss://, for example %(example)s."),
            params={"example": "wss://ocpp.example.com/ocpp"},
            code="invalid",
        )
    if parts.username or parts.password:
        raise ValidationError(
            _("Put the password in its own field, not in the URL."), code="credentials"
        )
    del port


class OperatorConnection(models.Model):
    class Role(models.TextChoices):
        BILLING = "billing", _("Billing")
        MONITORING = "monitoring", _("Monitoring")

    class Fallback(models.TextChoices):
        SPARKLIN = "sparklin", _("Sparklin decides")
        REFUSE = "refuse", _("Refuse")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="operators")
    name = models.CharField(_("operator"), max_length=100)
    url = models.CharField(_("websocket URL"), max_length=500, validators=[validate_ws_url])
    identity = models.CharField(_("identity presented"), max_length=48)
    # Sent to the operator (HTTP Basic), so encrypted, never hashed (forwarding.secrets).
    password_encrypted = models.TextField(blank=True)
    role = models.CharField(_("role"), max_length=12, choices=Role.choices)
    fallback = models.CharField(
        _("when the operator does not answer in time"),
        max_length=10,
        choices=Fallback.choices,
        default=Fallback.SPARKLIN,
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Changed by the portal's services only (the gateways read what changed since their last
    # look); the state below is written by the worker and does not touch it.
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    # State reported by the gateway holding the charger.
    connected = models.BooleanField(_("connected"), default=False)
    state_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(_("last message"), null=True, blank=True)
    buffered = models.PositiveIntegerField(_("buffered"), default=0)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    gateway = models.CharField(max_length=100, blank=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-enabled", "name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger"],
                condition=Q(role="billing", enabled=True),
                name="operator_one_billing_per_charger",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_billing(self) -> bool:
        return self.role == self.Role.BILLING


class ForwardedFrame(models.Model):
    """One frame relayed between the charger's connection and an operator, as the OCPP message
    log keeps the charger's own frames (bounded: purged after `OCPP_MESSAGE_LOG_DAYS`)."""

    class Direction(models.TextChoices):
        UP = "up", _("Sparklin → operator")
        DOWN = "down", _("Operator → Sparklin")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    operator = models.ForeignKey(
        OperatorConnection, on_delete=models.CASCADE, related_name="frames"
    )
    direction = models.CharField(max_length=4, choices=Direction.choices)
    message_type = models.PositiveSmallIntegerField()  # 2 CALL, 3 CALLRESULT, 4 CALLERROR
    unique_id = models.CharField(max_length=64)
    action = models.CharField(max_length=60, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    # What the gateway did with it: refused, fallback applied, dropped from a full buffer…
    note = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(db_index=True)

    objects = scoped_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["operator", "-at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "direction", "message_type", "unique_id", "at"],
                name="forwarded_frame_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.action or self.message_type} {self.unique_id}"


class OutboxFrame(models.Model):
    """A CALL of a charger an operator must still receive: the relay's durable buffer, shared
    by every gateway so it follows the charger (`ocpp_gateway.upstream.Buffer` writes and reads
    it; rows are deleted once the operator answered). `id` is the replay order."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    operator = models.ForeignKey(OperatorConnection, on_delete=models.CASCADE, related_name="+")
    # What a full buffer drops first: 0 meter values, 1 other messages, 2 transaction messages
    # (never dropped).
    priority = models.PositiveSmallIntegerField()
    unique_id = models.CharField(max_length=64)
    action = models.CharField(max_length=60)
    frame = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["operator", "id"], name="outbox_operator_order"),
            models.Index(fields=["operator", "priority", "id"], name="outbox_operator_drop"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.unique_id} → operator {self.operator_id}"


class RelayLease(models.Model):
    """Which gateway relays an operator connection now: the one holding the charger claims it
    before sending anything from the shared buffer and renews it; another may take it over when
    it is released (the charger left) or expired (that gateway died). So a backlog is replayed
    by one gateway at a time: in order, once."""

    operator = models.OneToOneField(
        OperatorConnection, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    owner = models.CharField(max_length=150)  # "<gateway instance>/<upstream token>"
    expires_at = models.DateTimeField()

    objects = scoped_manager()

    def __str__(self) -> str:
        return f"operator {self.operator_id}: {self.owner}"
