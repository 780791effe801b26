"""Live regions (healthchecks' `status_single` pattern): a page region is a `{% partialdef %}`
that polls its own URL with htmx, sending back the fingerprint of what it shows (`fp`). The view
answers 204 while the fingerprint is unchanged (htmx swaps nothing), the partial when it
changed, and the whole page to a plain request.

A view computes the fingerprint first and as cheaply as it can (`chargers.selectors.live_token`:
one query digesting what the region shows), and passes its context as a callable: an unchanged
poll then answers 204 before any list query runs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

Context = Mapping[str, Any]


def fingerprint(*parts: object) -> str:
    """A short digest of everything a live region shows."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def unchanged_poll(request: HttpRequest, fp: str) -> bool:
    """An htmx poll whose region already shows `fp`."""
    return bool(getattr(request, "htmx", False)) and request.GET.get("fp") == fp


def render_live(
    request: HttpRequest,
    template: str,
    partial: str,
    context: Context | Callable[[], Context],
    fp: str,
    page_extra: Context | Callable[[], Context] | None = None,
) -> HttpResponse:
    """Render `template` (a plain request) or its `partial` (an htmx poll), or answer 204 when
    the poll already shows `fp` — without building `context` when it is a callable.
    `page_extra` is added to the context of whole pages only."""
    if unchanged_poll(request, fp):
        return HttpResponse(status=204)
    data = {**(context() if callable(context) else context), "fingerprint": fp}
    if getattr(request, "htmx", False):
        return render(request, f"{template}#{partial}", data)
    extra = page_extra() if callable(page_extra) else page_extra
    return render(request, template, {**data, **(extra or {})})
