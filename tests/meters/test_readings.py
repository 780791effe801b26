"""meters.readings, the interface power management codes against: validation of what sources
send, bulk recording, the site's measurement (grid, solar, silence) and the retention purge."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django_scopes import scope

from meters import readings
from meters.models import Meter, MeterReading
from meters.readings import NewReading, SiteMeasurement

from ..builders import make_meter, make_site

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def stored(meter):
    with scope(community=meter.community):
        return list(MeterReading.objects.filter(meter=meter).order_by("at"))


def refreshed(meter):
    with scope(community=meter.community):
        return Meter.objects.get(pk=meter.pk)


@pytest.fixture
def grid(site):
    return make_meter(site, name="Grid", role=Meter.Role.GRID)


@time_machine.travel(NOW, tick=False)
def test_readings_are_stored_in_bulk_and_the_meter_last_reading_moves(grid):
    readings.record_readings(
        [
            NewReading(meter_id=grid.pk, at=NOW - timedelta(seconds=10), power_w_l1=1000.0),
            NewReading(
                meter_id=grid.pk,
                at=NOW - timedelta(seconds=5),
                power_w_l1=1200.0,
                power_w_l2=900.0,
                power_w_l3=-300.0,
                current_a_l1=5.2,
                energy_import_wh=123456.0,
            ),
        ]
    )
    rows = stored(grid)
    assert [r.power_w_total for r in rows] == [1000.0, 1800.0]  # the sum of measured phases
    assert rows[0].power_w_l2 is None and rows[1].current_a_l1 == 5.2
    assert rows[0].community_id == grid.community_id
    assert refreshed(grid).last_reading_at == NOW - timedelta(seconds=5)


@time_machine.travel(NOW, tick=False)
def test_a_replayed_reading_is_stored_once_and_an_older_one_does_not_move_time_back(grid):
    reading = NewReading(meter_id=grid.pk, at=NOW - timedelta(seconds=5), power_w_total=500.0)
    readings.record_readings([reading])
    readings.record_readings([reading])
    readings.record_readings(
        [NewReading(meter_id=grid.pk, at=NOW - timedelta(hours=1), power_w_total=1.0)]
    )
    assert len(stored(grid)) == 2
    assert refreshed(grid).last_reading_at == NOW - timedelta(seconds=5)


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"power_w_l1": 10_000_001.0}, "power per phase"),
        ({"power_w_l2": -2e7}, "power per phase"),
        ({"power_w_l1": float("nan")}, "power per phase"),
        ({"power_w_total": 4e7}, "total power"),
        ({"power_w_total": float("inf")}, "total power"),
        ({"at": datetime(1999, 12, 31, tzinfo=UTC)}, "outside 2000–2100"),
        ({"at": datetime(2100, 1, 1, tzinfo=UTC)}, "outside 2000–2100"),
        ({"at": datetime(2026, 6, 15, 12, 0)}, "time zone"),
        ({"power_w_total": None}, "no power"),
        ({"current_a_l3": 1e6}, "current"),
        ({"energy_import_wh": -1.0}, "energy register"),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_absurd_readings_are_logged_and_never_stored(grid, caplog, fields, why):
    values = {"meter_id": grid.pk, "at": NOW, "power_w_total": 100.0, **fields}
    good = NewReading(meter_id=grid.pk, at=NOW - timedelta(seconds=1), power_w_total=7.0)
    readings.record_readings([NewReading(**values), good])
    assert [r.power_w_total for r in stored(grid)] == [7.0]  # the good one of the batch stays
    assert why in caplog.text and f"meter {grid.pk}: reading rejected" in caplog.text


@time_machine.travel(NOW, tick=False)
def test_a_reading_from_a_clock_ahead_is_stored_at_its_arrival(grid):
    readings.record_readings(
        [NewReading(meter_id=grid.pk, at=NOW + timedelta(hours=2), power_w_total=1.0)]
    )
    assert stored(grid)[0].at == NOW
    assert refreshed(grid).last_reading_at == NOW


def test_readings_of_an_unknown_meter_are_dropped(grid, caplog):
    readings.record_readings([NewReading(meter_id=grid.pk + 999, at=NOW, power_w_total=1.0)])
    assert "unknown meter" in caplog.text


def test_a_site_without_a_grid_meter_has_no_measurement(site):
    make_meter(site, role=Meter.Role.SOLAR)
    make_meter(make_site(site.community), role=Meter.Role.GRID)
    make_meter(site, role=Meter.Role.GRID, name="Old grid", enabled=False)
    assert readings.site_measurement(site_id=site.pk) is None


@time_machine.travel(NOW, tick=False)
def test_a_grid_meter_that_never_spoke_is_stale(grid):
    m = readings.site_measurement(site_id=grid.site_id)
    assert m == SiteMeasurement(
        at=grid.created_at,
        grid_power_w=(None, None, None),
        grid_current_a=(None, None, None),
        solar_power_w=None,
        stale=True,
    )


def test_the_site_measurement_gives_the_newest_grid_reading_and_the_solar_production(
    grid, settings
):
    settings.METER_SILENT_SECONDS = 30
    solar = make_meter(grid.site, name="PV", role=Meter.Role.SOLAR)
    silent_solar = make_meter(grid.site, name="PV old", role=Meter.Role.SOLAR)
    with time_machine.travel(NOW - timedelta(minutes=5), tick=False):
        readings.record_readings(
            [NewReading(meter_id=silent_solar.pk, at=NOW - timedelta(minutes=5), power_w_total=9e3)]
        )
    with time_machine.travel(NOW, tick=False):
        readings.record_readings(
            [
                NewReading(meter_id=grid.pk, at=NOW - timedelta(seconds=20), power_w_l1=1.0),
                NewReading(
                    meter_id=grid.pk,
                    at=NOW - timedelta(seconds=10),
                    power_w_l1=2000.0,
                    power_w_l2=-500.0,
                    power_w_l3=100.0,
                    current_a_l1=8.7,
                ),
                # Wired so that production reads as export: still production.
                NewReading(meter_id=solar.pk, at=NOW - timedelta(seconds=2), power_w_total=-3000.0),
            ]
        )
        m = readings.site_measurement(site_id=grid.site_id)
    assert m == SiteMeasurement(
        at=NOW - timedelta(seconds=2),
        grid_power_w=(2000.0, -500.0, 100.0),
        grid_current_a=(8.7, None, None),
        solar_power_w=3000.0,
        stale=False,
        grid_power_total_w=1600.0,
    )
    with time_machine.travel(NOW + timedelta(seconds=29), tick=False):
        m = readings.site_measurement(site_id=grid.site_id)
    assert m is not None and m.stale  # 39 s since the grid's last reading
    assert m.grid_power_w == (2000.0, -500.0, 100.0)  # the last values, for whoever wants them
    assert m.solar_power_w is None  # the solar meter is silent too (31 s)


def test_a_total_only_grid_meter_gives_its_total_and_no_phases(grid):
    with time_machine.travel(NOW, tick=False):
        readings.record_readings([NewReading(meter_id=grid.pk, at=NOW, power_w_total=4200.0)])
        m = readings.site_measurement(site_id=grid.site_id)
    assert m is not None and m.grid_power_w == (None, None, None)
    assert m.grid_power_total_w == 4200.0 and not m.stale


def test_the_purge_keeps_the_configured_days(grid, settings):
    settings.METER_READINGS_DAYS = 7
    other = make_meter(make_site(grid.community), name="Other")
    with time_machine.travel(NOW, tick=False):
        readings.record_readings(
            [
                NewReading(meter_id=grid.pk, at=NOW - timedelta(days=8), power_w_total=1.0),
                NewReading(meter_id=grid.pk, at=NOW - timedelta(days=6), power_w_total=2.0),
                NewReading(
                    meter_id=other.pk, at=NOW - timedelta(days=7, seconds=1), power_w_total=3.0
                ),
            ]
        )
        from meters.tasks import purge_readings

        assert purge_readings.delay().get() == 2
    assert [r.power_w_total for r in stored(grid)] == [2.0]
    assert stored(other) == []


def test_the_grid_history_for_charts(grid):
    make_meter(grid.site, name="PV", role=Meter.Role.SOLAR)
    with time_machine.travel(NOW, tick=False):
        readings.record_readings(
            [
                NewReading(meter_id=grid.pk, at=NOW - timedelta(minutes=m), power_w_total=m * 100.0)
                for m in range(5)
            ]
        )
    since = NOW - timedelta(minutes=3)
    assert readings.grid_history(site_id=grid.site_id, since=since) == [
        (NOW - timedelta(minutes=3), 300.0),
        (NOW - timedelta(minutes=2), 200.0),
        (NOW - timedelta(minutes=1), 100.0),
        (NOW, 0.0),
    ]
    assert readings.grid_history(site_id=grid.site_id, since=since, limit=2) == [
        (NOW - timedelta(minutes=1), 100.0),
        (NOW, 0.0),
    ]
    assert readings.grid_history(site_id=make_site(grid.community).pk, since=since) == []


def test_many_sites_are_measured_in_two_queries(grid, django_assert_num_queries):
    other = make_meter(make_site(grid.community), name="Other grid")
    bare = make_site(grid.community)
    with time_machine.travel(NOW, tick=False):
        readings.record_readings(
            [
                NewReading(meter_id=grid.pk, at=NOW - timedelta(seconds=3), power_w_total=1.0),
                NewReading(meter_id=grid.pk, at=NOW - timedelta(seconds=1), power_w_total=2.0),
                NewReading(meter_id=other.pk, at=NOW - timedelta(seconds=2), power_w_total=3.0),
            ]
        )
        with django_assert_num_queries(2):
            found = readings.site_measurements(site_ids=[grid.site_id, other.site_id, bare.pk])
        assert found[grid.site_id] == readings.site_measurement(site_id=grid.site_id)
    assert found[grid.site_id].grid_power_total_w == 2.0
    assert found[other.site_id].grid_power_total_w == 3.0 and not found[other.site_id].stale
    assert found[bare.pk] is None
