"""Charts in the portal: one description in Python, drawn by Chart.js and readable as a table.

A view builds a `Chart` (labels along the x axis, one or more `Series`) and passes it to the
`templates/_chart.html` include, which renders a `<canvas>` for people who look and a table of the
same numbers for people who read (screen readers, printing, no JavaScript). `static/js/charts.js`
draws every chart it finds, also in fragments that htmx swaps in, so a polled partial that
re-renders a chart updates it. Chart.js is vendored under `static/vendor/chart.js/` (MIT, no CDN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["bar", "line"]


@dataclass(frozen=True)
class Series:
    """One data set: a label (translated by the caller), its values (None = no data) and unit."""

    label: str
    values: list[float | None]
    unit: str = ""
    kind: Kind = "bar"
    # A line drawn as a limit (dashed, no fill), e.g. a site's grid limit on the Power page.
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    """A chart with an HTML id unique on its page, a caption and the values along `labels`."""

    id: str
    title: str
    labels: list[str]
    series: list[Series] = field(default_factory=list)
    stacked: bool = False
    # The y axis' unit, shown on the axis; each series' own unit is shown in the table.
    unit: str = ""

    @property
    def data_id(self) -> str:
        return f"{self.id}-data"

    @property
    def is_empty(self) -> bool:
        return not self.labels or all(v is None for s in self.series for v in s.values)

    def rows(self) -> list[tuple[str, list[float | None]]]:
        """The same numbers as a table: one row per label, one column per series."""
        return [(label, [s.values[i] for s in self.series]) for i, label in enumerate(self.labels)]

    def config(self) -> dict[str, Any]:
        """What `static/js/charts.js` reads (through `json_script`): no code, only data."""
        return {
            "labels": self.labels,
            "stacked": self.stacked,
            "unit": self.unit,
            "series": [
                {
                    "label": s.label,
                    "values": s.values,
                    "unit": s.unit,
                    "kind": s.kind,
                    "dashed": s.dashed,
                }
                for s in self.series
            ],
        }
