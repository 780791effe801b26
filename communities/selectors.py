"""Reads of the communities app shared by other apps. Outlet and session reads live in
`chargers.selectors`, month bounds in `sparklin.dates`."""

from django.db.models import Exists, OuterRef

from .models import Membership

__all__ = ["holder_left"]


def holder_left() -> Exists:
    """An annotation for querysets of rows with `community` and `holder` (sessions, cards):
    true when the holder has left that community, whose remaining members then see "former
    member" instead of a name."""
    return Exists(
        Membership.objects.with_scopes_disabled().filter(
            community=OuterRef("community"), user=OuterRef("holder"), state=Membership.State.LEFT
        )
    )
