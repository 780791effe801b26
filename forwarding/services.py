"""Portal-side writes on operator connections: keyword-only verbs, one transaction, an audit
entry, `ForwardingError` with a translated message. The gateways read what changed here
(`updated_at`) every few seconds and open or close their relays (`ocpp_gateway.upstream`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from communities.permissions import user_can
from communities.services import audit

from . import secrets
from .models import OperatorConnection, OutboxFrame

if TYPE_CHECKING:
    from accounts.models import User
    from chargers.models import Charger

PERMISSION = "operators:manage"


class ForwardingError(Exception):
    """A change refused by a forwarding rule; `message` is shown to the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check(charger: Charger, actor: User | None) -> None:
    if not user_can(charger.community, actor, PERMISSION):
        raise ForwardingError(_("You cannot connect operators to this charger."))


def _check_one_billing(
    charger: Charger, role: str, operator: OperatorConnection | None = None
) -> None:
    """At most one enabled Billing operator per charger (`operator` is the one being edited)."""
    others = charger.operators.filter(role=OperatorConnection.Role.BILLING, enabled=True)
    if operator is not None:
        others = others.exclude(pk=operator.pk)
    if role == OperatorConnection.Role.BILLING and others.exists():
        raise ForwardingError(
            _("This charger already has a Billing operator: disconnect it first.")
        )


@transaction.atomic
def connect_operator(
    *,
    charger: Charger,
    actor: User | None,
    name: str,
    url: str,
    identity: str,
    password: str,
    role: str,
    fallback: str = OperatorConnection.Fallback.SPARKLIN,
) -> OperatorConnection:
    """Relay the charger's OCPP traffic to an operator. At most one operator per charger has
    the Billing role (it answers authorizations and transactions)."""
    _check(charger, actor)
    _check_one_billing(charger, role)
    now = timezone.now()
    try:
        with transaction.atomic():
            operator = OperatorConnection.objects.create(
                community=charger.community,
                charger=charger,
                name=name,
                url=url,
                identity=identity or charger.identity,
                password_encrypted=secrets.encrypt(password),
                role=role,
                fallback=fallback,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError as e:  # two managers connecting Billing operators at the same time
        raise ForwardingError(
            _("This charger already has a Billing operator: disconnect it first.")
        ) from e
    audit(
        community=charger.community,
        actor=actor,
        action="operator.connect",
        target=f"{name} ({operator.get_role_display()}) → {charger.identity}",
        operator=operator.pk,
        url=url,
        role=role,
    )
    return operator


@transaction.atomic
def disconnect_operator(*, operator: OperatorConnection, actor: User | None) -> None:
    """Stop relaying at once: every gateway sees the change at its next look (a few seconds),
    closes the relay and drops what it buffered for this operator. The row and its frame log
    stay (history)."""
    _check(operator.charger, actor)
    if not operator.enabled:
        return
    now = timezone.now()
    operator.enabled = False
    operator.connected = False
    operator.disconnected_at = now
    operator.updated_at = now
    operator.save(update_fields=["enabled", "connected", "disconnected_at", "updated_at"])
    # Nothing more is owed to it (the gateway drops what it noted meanwhile at its next look).
    OutboxFrame.objects.filter(operator=operator).delete()
    audit(
        community=operator.community,
        actor=actor,
        action="operator.disconnect",
        target=f"{operator.name} → {operator.charger.identity}",
        operator=operator.pk,
    )


EDITABLE = ("name", "url", "identity", "role", "fallback")


@transaction.atomic
def update_operator(
    *,
    operator: OperatorConnection,
    actor: User | None,
    name: str,
    url: str,
    identity: str,
    password: str,
    role: str,
    fallback: str,
    clear_password: bool = False,
) -> list[str]:
    """Change an operator connection; the password is kept when `password` is empty (it is
    never shown back), removed with `clear_password`. The gateway holding the charger sees the
    change at its next look (`updated_at`, a few seconds) and reconnects the live upstream with
    the new settings; what is buffered for the operator stays and goes to the new address.
    Returns the names of the fields changed (audited, the password as "password" only)."""
    _check(operator.charger, actor)
    if not operator.enabled:
        raise ForwardingError(_("This operator is disconnected: connect it again instead."))
    _check_one_billing(operator.charger, role, operator)
    values = {
        "name": name,
        "url": url,
        "identity": identity or operator.charger.identity,
        "role": role,
        "fallback": fallback,
    }
    changed = [f for f in EDITABLE if getattr(operator, f) != values[f]]
    for f in changed:
        setattr(operator, f, values[f])
    if password:
        operator.password_encrypted = secrets.encrypt(password)
        changed.append("password")
    elif clear_password and operator.password_encrypted:
        operator.password_encrypted = ""
        changed.append("password")
    if not changed:
        return []
    operator.updated_at = timezone.now()
    fields = [f for f in changed if f != "password"]
    fields += ["password_encrypted"] if "password" in changed else []
    try:
        with transaction.atomic():
            operator.save(update_fields=[*fields, "updated_at"])
    except IntegrityError as e:  # another Billing operator connected at the same time
        raise ForwardingError(
            _("This charger already has a Billing operator: disconnect it first.")
        ) from e
    audit(
        community=operator.community,
        actor=actor,
        action="operator.edit",
        target=f"{operator.name} ({operator.get_role_display()}) → {operator.charger.identity}",
        operator=operator.pk,
        changed=changed,
        url=operator.url,
        role=operator.role,
    )
    return changed
