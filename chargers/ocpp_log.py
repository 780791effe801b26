"""A charger's OCPP message log as people read it: the frames of one action or all, newest
first, as indented JSON (never Python's repr); and the last 24 hours as JSON lines for support,
streamed. Whoever may not see personal data (a limited installer) gets every payload through
`chargers.redaction.redact_payload`, on the page and in the download alike."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_scopes import scope

from communities.services import audit

from .models import Charger, OcppMessage
from .redaction import redact_payload

if TYPE_CHECKING:
    from accounts.models import User

DOWNLOAD_HOURS = 24
_CHUNK = 500


def messages(charger: Charger, *, action: str = "") -> QuerySet[OcppMessage]:
    """The log of `charger`, newest first, optionally one action (calls and their answers)."""
    qs = OcppMessage.objects.filter(charger=charger).order_by("-at", "-id")
    return qs.filter(action=action) if action else qs


def _payload(message: OcppMessage, redact: bool) -> object:
    return redact_payload(message.payload, action=message.action) if redact else message.payload


def prepare(page: Iterable[OcppMessage], *, redact: bool) -> None:
    """Give each message of a page its `pretty` text: indented JSON, redacted when asked."""
    for message in page:
        message.pretty = json.dumps(  # type: ignore[attr-defined]
            _payload(message, redact), indent=2, ensure_ascii=False
        )


def _lines(charger: Charger, since: datetime, until: datetime, redact: bool) -> Iterator[str]:
    # Runs while the response streams, after the view (and the request's scope) returned.
    with scope(community=charger.community):
        rows = (
            OcppMessage.objects.filter(charger=charger, at__gte=since, at__lte=until)
            .order_by("at", "id")
            .iterator(chunk_size=_CHUNK)
        )
        for m in rows:
            line = {
                "at": m.at.isoformat(),
                "direction": m.direction,
                "message_type": m.message_type,
                "unique_id": m.unique_id,
                "action": m.action,
                "payload": _payload(m, redact),
            }
            yield json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


@transaction.atomic
def export_last_day(
    *, charger: Charger, actor: User | None, redact: bool, now: datetime | None = None
) -> Iterator[str]:
    """The frames of the last 24 hours as JSON lines, oldest first, read in chunks while they
    stream (the whole log is never in memory). The download is audited: it may carry card
    identifiers (unless redacted)."""
    until = now or timezone.now()
    since = until - timedelta(hours=DOWNLOAD_HOURS)
    audit(
        community=charger.community,
        actor=actor,
        action="charger.log_download",
        target=charger.identity,
        charger_id=charger.pk,
        redacted=redact,
    )
    return _lines(charger, since, until, redact)
