"""The audit log as sentences in the reader's language instead of raw codes (`member.add`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import template
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from communities.models import AuditEvent

register = template.Library()

# %(target)s is what the entry recorded (a person, a site, a serial number, a price…).
SENTENCES = {
    "community.create": _("created the community %(target)s"),
    "community.update": _("changed the community's settings"),
    "installation.create": _("created the installation %(target)s"),
    "member.add": _("added %(target)s"),
    "member.update": _("changed the details or role of %(target)s"),
    "member.remove": _("removed %(target)s from the community"),
    "member.leave": _("left the community"),
    "site.create": _("added the site %(target)s"),
    "site.update": _("changed the site %(target)s"),
    "meter.create": _("added the meter %(target)s"),
    "meter.update": _("changed the meter %(target)s"),
    "meter.delete": _("removed the meter %(target)s"),
    "charger.register": _("registered the charger %(target)s"),
    "charger.claim": _("added the charger %(target)s by its serial number and PIN"),
    "charger.update": _("changed the charger %(target)s"),
    "charger.password": _("generated a new password for the charger %(target)s"),
    "charger.command": _("sent a command to the charger: %(target)s"),
    "charger.reset": _("restarted the charger %(target)s"),
    "charger.unlock": _("unlocked an outlet of the charger %(target)s"),
    "charger.availability": _("changed the availability of an outlet: %(target)s"),
    "charger.trigger": _("asked the charger for a report: %(target)s"),
    "charger.move": _("moved the charger %(target)s"),
    "charger.log_download": _("downloaded the OCPP log of the charger %(target)s"),
    "charger.delete": _("deleted the charger %(target)s"),
    "charger.events_retry": _("asked to record again the events kept aside for %(target)s"),
    "operator.connect": _("connected the operator %(target)s"),
    "operator.disconnect": _("disconnected the operator %(target)s"),
    "operator.edit": _("changed the operator %(target)s"),
    "card.add": _("added the card %(target)s"),
    "card.deactivate": _("deactivated the card %(target)s"),
    "card.reactivate": _("reactivated the card %(target)s"),
    "card.update": _("changed the name or expiry of the card %(target)s"),
    "card.learn": _("opened a window to add a card by scanning it at %(target)s"),
    "card.merge": _("merged the duplicate spellings of the card %(target)s"),
    "group.create": _("created the user group %(target)s"),
    "group.update": _("changed the user group %(target)s"),
    "group.delete": _("deleted the user group %(target)s"),
    "rule.policy": _("set who may charge on %(target)s"),
    "rule.policy_remove": _("removed the rule of use of %(target)s"),
    "rule.window_add": _("added charging hours on %(target)s"),
    "rule.window_remove": _("removed charging hours on %(target)s"),
    "rule.limit": _("set the limits of use of %(target)s"),
    "rule.offline": _("chose what the chargers of %(target)s do while offline"),
    "price.add": _("added the price %(target)s"),
    "price.update": _("corrected the price to %(target)s"),
    "price.delete": _("removed the price %(target)s"),
    "invitation.handover": _("invited the future owner (%(target)s)"),
    "invitation.transfer": _("offered the ownership to %(target)s"),
    "invitation.revoke": _("cancelled the invitation sent to %(target)s"),
    "ownership.handover": _("became the owner of the installation"),
    "ownership.transfer": _("accepted the ownership of the installation"),
    "access.grant": _("gave access to the installer %(target)s"),
    "access.handover_full": _("started the 14 days of full access of the installer %(target)s"),
    "access.revoke": _("revoked the access of the installer %(target)s"),
    "grant.revoke": _("revoked the access of the installer %(target)s"),
    "access_request.create": _("asked for access"),
    "access_request.accept": _("accepted the access request of %(target)s"),
    "access_request.refuse": _("refused the access request of %(target)s"),
    "expense_notes.generate": _("issued the expense notes of %(target)s"),
    "expense_notes.send": _("sent the expense notes of %(target)s"),
    "expense_notes.send_request": _("asked to send the expense notes of %(target)s"),
    "expense_notes.export": _("exported the expense notes of %(target)s"),
    "expense_note.resend": _("sent the expense note %(target)s again"),
    "power.site": _("changed the power settings of the site %(target)s"),
    "power.circuit": _("saved the circuit %(target)s"),
    "power.circuit_delete": _("removed the circuit %(target)s"),
    "power.charger": _("changed the wiring and currents of the charger %(target)s"),
}


@register.filter
def audit_sentence(event: AuditEvent) -> str:
    """What `event` did, as a sentence whose subject is its actor (shown next to it)."""
    sentence = SENTENCES.get(event.action)
    if sentence is None:
        return event.action  # a new kind of entry: still shown, untranslated
    return str(sentence) % {"target": event.target or "—"}
