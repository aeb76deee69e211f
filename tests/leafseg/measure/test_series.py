"""leafseg.measure.series: dates and plants from file names, and the roughness of growth series."""
from datetime import datetime

import numpy as np
import pytest

from leafseg.measure import series


@pytest.mark.parametrize("name, when", [
    ("BVZ0072-GC35L-RGB01_fullres-cor-T01-D4-35519_2016_10_01_12_00_00_00", datetime(2016, 10, 1, 12)),
    ("plant3-20161001", datetime(2016, 10, 1)),
    ("a_2016-10-01T08-30", datetime(2016, 10, 1, 8, 30)),
    ("tray2_pot5.2019.03.31", datetime(2019, 3, 31)),
])
def test_date_in_name(name, when):
    assert series.date_in_name(name) == when


@pytest.mark.parametrize("name", ["plant_12345678", "img_2016_13_01", "scan0001", "x_20161301"])
def test_no_date_in_a_name_without_one(name):
    # A long number, a month 13 or no digits at all is no date.
    assert series.date_in_name(name) is None


def test_plant_key_removes_the_date_and_time_stamp():
    assert series.plant_key("BVZ0072-T01-D4-35519_2016_10_01_12_00_00_00") == "BVZ0072-T01-D4-35519"
    assert series.plant_key("plant3-20161001") == "plant3"
    assert series.plant_key("cam2_2016-10-01_potA") == "cam2_potA"
    assert series.plant_key("tray1_a_2016_10_02", pattern=r"^(?P<plant>tray\d+)") == "tray1"
    with pytest.raises(ValueError, match="tray1_a"):
        series.plant_key("tray1_a", pattern=r"pot\d")


def test_group_series_orders_each_plant_by_time():
    names = ["p2_2016_10_03", "p1_2016_10_02", "p1_2016_10_01", "p2_2016_10_01", "p1_2016_10_10"]
    grouped = series.group_series(names)
    assert list(grouped) == ["p1", "p2"]
    assert [name for _, name in grouped["p1"]] == ["p1_2016_10_01", "p1_2016_10_02", "p1_2016_10_10"]
    with pytest.raises(ValueError, match="nodate"):
        series.group_series(["p1_2016_10_01", "nodate"])


def test_held_out_plants_are_a_fixed_share_independent_of_the_others():
    keys = [f"plant{k}" for k in range(400)]
    held = series.held_out_plants(keys, 0.25)
    assert 70 <= len(held) <= 130
    # Each plant's side does not depend on which other plants are there.
    assert series.held_out_plants(keys[:50], 0.25) == {k for k in held if k in keys[:50]}
    with pytest.raises(ValueError, match="1.5"):
        series.held_out_plants(keys, 1.5)


def test_a_smoothly_growing_plant_has_no_roughness():
    counts = [2, 3, 3, 4, 5, 6, 6, 7]
    areas = 100 * 1.2 ** np.arange(8)  # 20 % a day, exactly geometric
    figures = series.plant_roughness(counts, areas)
    assert figures["count_jitter"] == 0.0
    assert figures["count_falls"] == 0.0
    assert figures["area_jitter"] == pytest.approx(0.0, abs=1e-12)


def test_a_jagged_series_is_rough():
    # Day 3 counts 4 leaves of moss; day 5 loses half the rosette.
    counts = [4, 5, 10, 6, 7, 8]
    areas = [100, 120, 140, 60, 200, 240]
    figures = series.plant_roughness(counts, areas)
    # Inner days: |5-5|, |10-6|, |6-7|, |7-7| -> mean 5/4.
    assert figures["count_jitter"] == pytest.approx(5 / 4)
    # Steps: +1, +5, -4, +1, +1 -> one fall of 2 or more in 5.
    assert figures["count_falls"] == pytest.approx(1 / 5)
    logs = np.log(areas)
    expected = np.median(np.abs(logs[1:-1] - 0.5 * (logs[:-2] + logs[2:])))
    assert figures["area_jitter"] == pytest.approx(expected)


def test_short_series_give_nan_not_an_error():
    figures = series.plant_roughness([3], [50])
    assert np.isnan(figures["count_jitter"]) and np.isnan(figures["count_falls"]) and np.isnan(figures["area_jitter"])


def test_series_roughness_averages_over_plants():
    rows = []
    for day, (a, b) in enumerate(zip([1, 2, 3, 4], [1, 5, 1, 5])):
        rows.append({"plant": "smooth", "time": day, "leaves": a, "area": 10 * (day + 1)})
        rows.append({"plant": "jagged", "time": day, "leaves": b, "area": 10})
    summary = series.series_roughness(list(reversed(rows)))  # order of rows does not matter
    assert summary["plants"] == 2 and summary["photographs"] == 8
    assert summary["per_plant"]["smooth"]["count_jitter"] == 0.0
    assert summary["per_plant"]["jagged"]["count_jitter"] == 4.0
    assert summary["count_jitter"] == 2.0
    assert summary["per_plant"]["jagged"]["count_falls"] == pytest.approx(1 / 3)
