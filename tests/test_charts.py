"""The shared chart include: the numbers drawn are the numbers in the table."""

import json

from django.template.loader import render_to_string
from django.utils.translation import override

from sparklin.charts import Chart, Series


def test_chart_renders_canvas_data_and_table():
    chart = Chart(
        id="energy-by-day",
        title="Energy per day",
        labels=["1 Dec", "2 Dec"],
        series=[Series("Energy", [12.5, None], unit="kWh"), Series("Cost", [3.0, 0.0], unit="€")],
        unit="kWh",
    )
    html = render_to_string("_chart.html", {"chart": chart})
    assert 'data-chart="energy-by-day-data"' in html
    start = html.index('id="energy-by-day-data"')
    payload = html[html.index(">", start) + 1 : html.index("</script>", start)]
    spec = json.loads(payload)
    assert spec["labels"] == ["1 Dec", "2 Dec"]
    assert spec["series"][0]["values"] == [12.5, None]
    # The table says the same: a missing value is a dash, not a zero.
    assert '<th scope="row">2 Dec</th><td class="num">—</td><td class="num">0</td>' in html
    assert "Energy (kWh)" in html


def test_empty_chart_says_so_instead_of_drawing_nothing():
    chart = Chart(id="c", title="Power", labels=[], series=[Series("kW", [])])
    with override("en"):  # the portal defaults to French (the compiled catalogue translates it)
        html = render_to_string("_chart.html", {"chart": chart})
    assert "canvas" not in html
    assert "No data for this period yet." in html
