"""The provider's chart data: one chart per vital with BP as one, gaps, bands, alerts, ranges."""

from __future__ import annotations

import json

from vitalchain.portal.charts import (
    BP,
    MAX_GAP_S,
    RANGES,
    AlertMark,
    charts,
    gap_limit,
    latest,
    window,
)
from vitalchain.store.model import Reading
from vitalchain.vitals import Vital

T0 = 1_795_000_000  # Unix seconds


def reading(seq: int, vital: Vital, value: float, t: float) -> Reading:
    return Reading(seq, vital, value, int(t * 1000))


def test_blood_pressure_is_one_chart_with_both_series_aligned() -> None:
    readings = [
        reading(1, Vital.SYSTOLIC_BP, 121, T0),
        reading(2, Vital.DIASTOLIC_BP, 79, T0),
        reading(3, Vital.SYSTOLIC_BP, 131, T0 + 60),
        reading(4, Vital.DIASTOLIC_BP, 85, T0 + 60),
        reading(5, Vital.SPO2, 97, T0 + 30),
    ]
    built = charts(readings, {Vital.SYSTOLIC_BP: (90, 140)})
    assert list(built) == [BP, "spo2"]
    bp = built[BP]
    assert bp.title == "Blood pressure"
    assert bp.unit == "mmHg"
    assert bp.x == [T0, T0 + 60]
    assert bp.series == {"systolic": [121, 131], "diastolic": [79, 85]}
    assert bp.bands == {"systolic": (90, 140), "diastolic": None}
    assert bp.points == 4
    assert built["spo2"].series == {"spo2": [97]}


def test_a_band_is_the_on_chain_threshold_or_none() -> None:
    readings = [reading(i, Vital.HEART_RATE, 70 + i, T0 + i) for i in range(5)]
    banded = charts(readings, {Vital.HEART_RATE: (55.5, 101.25)})["heart_rate"]
    assert banded.band == (55.5, 101.25)
    assert banded.to_json()["band"] == [55.5, 101.25]
    bare = charts(readings, {})["heart_rate"]
    assert bare.band is None  # no invented default: the page says none is set on chain
    assert bare.to_json()["band"] is None


def test_no_line_joins_readings_far_apart() -> None:
    """Every 10 s, then a 100 s dropout (> 5 x the median 10 s): a null row breaks the line."""
    times = [T0 + 10 * i for i in range(6)] + [T0 + 150, T0 + 160]
    readings = [reading(i, Vital.SPO2, 95 + i % 3, t) for i, t in enumerate(times)]
    chart = charts(readings, {})["spo2"]
    column = chart.series["spo2"]
    assert chart.points == len(readings)
    assert column.count(None) == 1
    gap = column.index(None)
    assert chart.x[gap - 1] == T0 + 50
    assert chart.x[gap + 1] == T0 + 150
    assert chart.x[gap - 1] < chart.x[gap] < chart.x[gap + 1]  # x stays ascending for uPlot
    assert chart.x == sorted(chart.x)


def test_the_gap_limit_is_five_median_spacings_at_most_fifteen_minutes() -> None:
    assert gap_limit([T0, T0 + 10, T0 + 20, T0 + 40]) == 50
    assert gap_limit([T0, T0 + 3600, T0 + 7200]) == MAX_GAP_S
    assert gap_limit([T0]) == MAX_GAP_S
    assert gap_limit([T0, T0, T0 + 4]) == 20  # repeated times count once
    # spot checks half a day apart are never joined
    spots = [reading(i, Vital.SYSTOLIC_BP, 120, T0 + i * 12 * 3600) for i in range(3)]
    assert charts(spots, {})[BP].series["systolic"] == [120, None, 120, None, 120]


def test_several_readings_at_one_time_are_each_a_point() -> None:
    readings = [reading(i, Vital.SPO2, 95 + i, T0) for i in range(4)]
    chart = charts(readings, {})["spo2"]
    assert chart.x == [T0] * 4
    assert chart.series["spo2"] == [95, 96, 97, 98]


def test_the_range_is_measured_back_from_the_latest_reading() -> None:
    readings = [reading(i, Vital.SPO2, 96, T0 - h * 3600) for i, h in enumerate((0, 2, 30))]
    start, end = window(readings, RANGES["24h"]) or (0, 0)
    assert (start, end) == (T0 - 86400, T0)
    assert window([], RANGES["1h"]) is None
    day = charts(readings, {}, start=start, end=end)["spo2"]
    assert day.points == 2  # the reading 30 h back is out of the 24 h range
    assert day.to_json()["span"] == [start, end]  # the axis shows the whole range
    hour = charts(readings, {}, start=T0 - 3600, end=T0)["spo2"]
    assert hour.points == 1


def test_alert_markers_go_to_their_vitals_chart_within_the_window() -> None:
    readings = [
        reading(1, Vital.SPO2, 85, T0),
        reading(2, Vital.DIASTOLIC_BP, 100, T0),
        reading(3, Vital.SYSTOLIC_BP, 150, T0),
    ]
    marks = [
        AlertMark(Vital.SPO2, T0, 85, "medium"),
        AlertMark(Vital.DIASTOLIC_BP, T0, 100, "high"),
        AlertMark(Vital.SPO2, T0 - 7200, 84, "high"),
    ]
    built = charts(readings, {}, marks, start=T0 - 3600, end=T0)
    assert built["spo2"].to_json()["alerts"] == [
        {"t": T0, "value": 85, "priority": "medium", "series": "spo2"}
    ]
    assert [a.vital for a in built[BP].alerts] == [Vital.DIASTOLIC_BP]


def test_the_json_is_what_charts_js_reads() -> None:
    chart = charts([reading(1, Vital.BODY_TEMPERATURE, 37.2, T0)], {})["temperature"]
    data = json.loads(json.dumps(chart.to_json()))
    assert set(data) == {"title", "unit", "x", "series", "band", "bands", "alerts", "span"}
    assert data["unit"] == "°C"
    assert data["series"] == {"temperature": [37.2]}


def test_latest_is_each_vitals_newest_reading() -> None:
    readings = [
        reading(1, Vital.SPO2, 97, T0),
        reading(2, Vital.SPO2, 91, T0 + 5),
        reading(3, Vital.HEART_RATE, 70, T0 + 1),
        reading(4, Vital.SPO2, 93, T0 + 5),  # same time, later sequence
    ]
    found = latest(readings)
    assert list(found) == [Vital.HEART_RATE, Vital.SPO2]
    assert found[Vital.SPO2].value == 93
