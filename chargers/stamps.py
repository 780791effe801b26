"""The access stamp (`AccessStamp`): one counter per community moved by every change of who may
charge, so the gateways drop their cached decisions within seconds and chargers' local lists
are re-sent. Services call `changed()` inside their transaction; the gateway reads `versions()`."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import F
from django.utils import timezone

from .models import AccessStamp


def changed(*, community_id: int) -> None:
    """Move the community's stamp (creating it the first time). One UPDATE: concurrent changes
    each add one, none is lost."""
    now = timezone.now()
    stamps = AccessStamp.objects.with_scopes_disabled().filter(community_id=community_id)
    if not stamps.update(version=F("version") + 1, changed_at=now):
        AccessStamp.objects.with_scopes_disabled().get_or_create(
            community_id=community_id, defaults={"version": 1, "changed_at": now}
        )


def versions(community_ids: Iterable[int]) -> dict[int, int]:
    """{community id: version} for these communities (0 when nothing ever changed)."""
    ids = sorted(set(community_ids))
    found = dict(
        AccessStamp.objects.with_scopes_disabled()
        .filter(community_id__in=ids)
        .values_list("community_id", "version")
    )
    return {cid: found.get(cid, 0) for cid in ids}
