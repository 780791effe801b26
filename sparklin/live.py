"""Live regions (healthchecks' `status_single` pattern): a page region is a `{% partialdef %}`
that polls its own URL with htmx, sending back the fingerprint of what it shows (`fp`). The view
answers 204 while the fingerprint is unchanged (htmx swaps nothing), the partial when it
changed, and the whole page to a plain request."""

import hashlib

from django.http import HttpResponse
from django.shortcuts import render


def fingerprint(*parts) -> str:
    """A short digest of everything a live region shows."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def render_live(request, template: str, partial: str, context: dict, fp: str, page_extra=None):
    """Render `template` (a plain request) or its `partial` (an htmx poll), or answer 204 when
    the poll already shows `fp`. `page_extra` is added to the context of whole pages only."""
    context["fingerprint"] = fp
    if request.htmx:
        if request.GET.get("fp") == fp:
            return HttpResponse(status=204)
        return render(request, f"{template}#{partial}", context)
    return render(request, template, {**context, **(page_extra or {})})
