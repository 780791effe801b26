"""One charging session: its curve, meter readings, stop reason, anomaly and OCPP frames."""

import json
from datetime import tzinfo

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from communities.permissions import community_permission, has_permission
from sparklin.charts import Chart, Series
from sparklin.http import CommunityRequest

from .. import selectors
from ..models import ChargingSession, OcppMessage
from ..redaction import redact_payload


@community_permission("community:view")
def session_detail(request: CommunityRequest, community: str, session: int) -> HttpResponse:
    """A session's page, from the sessions lists: managers any session, a driver their own
    (anything else answers 404, like an id of another community). The OCPP frames are shown to
    those who may read the charger's log, redacted as the log is for limited access."""
    found = get_object_or_404(selectors.sessions_for_list().select_related("card"), pk=session)
    if found.holder_id != request.user.pk and not has_permission(request, "sessions:view_all"):
        raise Http404
    frames: list[OcppMessage] = []
    more = False
    if has_permission(request, "chargers:view"):
        frames, more = selectors.session_frames(found)
        redact = not has_permission(request, "sessions:view_all")
        for m in frames:
            payload = redact_payload(m.payload, action=m.action) if redact else m.payload
            m.pretty = json.dumps(payload, indent=2, ensure_ascii=False)  # type: ignore[attr-defined]
    return render(
        request,
        "chargers/session_detail.html",
        {
            "session": found,
            "charts": _curve_charts(found, request.community.tz),
            "frames": frames,
            "more_frames": more,
        },
    )


def _curve_charts(session: ChargingSession, tz: tzinfo) -> list[Chart]:
    curve = selectors.session_curve(session)
    labels = [date_format(at.astimezone(tz), "H:i") for at, _p, _e in curve]
    return [
        Chart(
            id="session-power",
            title=_("Power"),
            labels=labels,
            series=[Series(_("Power"), [p for _a, p, _e in curve], "kW", kind="line")],
            unit="kW",
        ),
        Chart(
            id="session-energy",
            title=_("Energy since the start"),
            labels=labels,
            series=[Series(_("Energy"), [e for _a, _p, e in curve], "kWh", kind="line")],
            unit="kWh",
        ),
    ]
