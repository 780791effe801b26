"""A charger's OCPP message log as people read it: the frames of one action or all, newest
first, as indented JSON (never Python's repr); and the last 24 hours as JSON lines for support,
streamed. Whoever may not see personal data (a limited installer) gets every payload through
`chargers.redaction.redact_payload`, on the page and in the download alike."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django_scopes import scope

from communities.services import audit

from .models import Charger, OcppMessage
from .redaction import redact_payload

if TYPE_CHECKING:
    from accounts.models import User

DOWNLOAD_HOURS = 24
PAGE = 50
_CHUNK = 500


def messages(charger: Charger, *, action: str = "") -> QuerySet[OcppMessage]:
    """The log of `charger`, newest first, optionally one action (calls and their answers)."""
    qs = OcppMessage.objects.filter(charger=charger).order_by("-at", "-id")
    return qs.filter(action=action) if action else qs


@dataclass
class LogPage:
    """One page of the log, by keyset: `older` / `newer` are the cursors of the neighbouring
    pages (None at an end). No COUNT and no OFFSET: a page costs the same at the first frame
    or the 100,000th, however large the log."""

    rows: list[OcppMessage]
    older: str | None
    newer: str | None

    def __iter__(self) -> Iterator[OcppMessage]:
        return iter(self.rows)


def cursor_of(message: OcppMessage) -> str:
    return f"{message.at.isoformat()}_{message.pk}"


def parse_cursor(value: str) -> tuple[datetime, int] | None:
    at, _, pk = (value or "").rpartition("_")
    try:
        when = datetime.fromisoformat(at)
        return (when, int(pk)) if when.tzinfo is not None else None
    except ValueError:
        return None


def page(
    charger: Charger, *, action: str = "", before: str = "", after: str = "", size: int = PAGE
) -> LogPage:
    """The `size` frames older than cursor `before`, or newer than `after`, or the newest."""
    qs = messages(charger, action=action)
    newer_than = parse_cursor(after)
    older_than = parse_cursor(before)
    if newer_than is not None:
        at, pk = newer_than
        rows = list(qs.filter(Q(at__gt=at) | Q(at=at, pk__gt=pk)).order_by("at", "id")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return LogPage(
            rows,
            older=cursor_of(rows[-1]) if rows else None,
            newer=cursor_of(rows[0]) if rows and more_newer else None,
        )
    if older_than is not None:
        at, pk = older_than
        qs = qs.filter(Q(at__lt=at) | Q(at=at, pk__lt=pk))
    rows = list(qs[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    return LogPage(
        rows,
        older=cursor_of(rows[-1]) if rows and more_older else None,
        newer=cursor_of(rows[0]) if rows and older_than is not None else None,
    )


def _payload(message: OcppMessage, redact: bool) -> object:
    return redact_payload(message.payload, action=message.action) if redact else message.payload


def prepare(page: Iterable[OcppMessage], *, redact: bool) -> None:
    """Give each message of a page its `pretty` text: indented JSON, redacted when asked."""
    for message in page:
        message.pretty = json.dumps(  # type: ignore[attr-defined]
            _payload(message, redact), indent=2, ensure_ascii=False
        )


def _lines(charger: Charger, since: datetime, until: datetime, redact: bool) -> Iterator[str]:
    """JSON lines, one chunk per 500 frames (one write per chunk, not per line). Unredacted,
    the payload's JSON text is spliced in as the database returns it (no decode/encode)."""
    # Runs while the response streams, after the view (and the request's scope) returned.
    with scope(community=charger.community):
        rows = (
            OcppMessage.objects.filter(charger=charger, at__gte=since, at__lte=until)
            .order_by("at", "id")
            .values_list(
                "at",
                "direction",
                "message_type",
                "unique_id",
                "action",
                "payload" if redact else Cast(F("payload"), output_field=TextField()),
            )
            .iterator(chunk_size=_CHUNK)
        )
        chunk: list[str] = []
        for at, direction, message_type, unique_id, action, payload in rows:
            head = json.dumps(
                {
                    "at": at.isoformat(),
                    "direction": direction,
                    "message_type": message_type,
                    "unique_id": unique_id,
                    "action": action,
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            body = (
                json.dumps(
                    redact_payload(payload, action=action),
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                if redact
                else payload
            )
            chunk.append(f'{head[:-1]},"payload":{body}}}\n')
            if len(chunk) >= _CHUNK:
                yield "".join(chunk)
                chunk = []
        if chunk:
            yield "".join(chunk)


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
