"""Template helpers of the billing app: a note's dispatches by kind, and the dashboard alert for
expense notes that could not be sent."""

from django import template

from billing.models import NoteDispatch

register = template.Library()


@register.filter
def note_dispatches(note):
    """[(dispatch or None, kind)] for finance then driver, from prefetched dispatches."""
    return [(note.dispatch(kind), kind) for kind in NoteDispatch.Kind.values]


@register.inclusion_tag("billing/_expense_alert.html", takes_context=True)
def expense_notes_alert(context):
    """On the dashboard, for managers: why notes were not e-mailed (no recipient, failed
    sends). `{% load billing %}{% expense_notes_alert %}`."""
    from billing.dispatch import no_recipient_message

    community = context.get("community")
    perms = context.get("community_perms") or ()
    if community is None or "notes:manage" not in perms:
        return {"show": False}
    failed = NoteDispatch.objects.filter(
        community=community, status=NoteDispatch.Status.FAILED, note__is_current=True
    ).count()
    return {
        "show": bool(failed or not community.expense_email),
        "community": community,
        "no_recipient": "" if community.expense_email else no_recipient_message(),
        "failed": failed,
    }
