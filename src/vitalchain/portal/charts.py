"""The provider's charts as data: one chart per vital (blood pressure as one), with gaps,
threshold bands and alert markers, for ``static/charts.js`` to draw with uPlot.

Why here and pure: what a clinician is shown (which points, where a line breaks, which band)
is a clinical decision that tests must pin without a browser; the script only draws it.

Time is patient time: each reading's own timestamp (the device's, Unix seconds on the x axis);
a range (1 h, 24 h, 7 d) is measured back from the latest reading, not from the wall clock, so
a device that stopped yesterday still shows its last day.  The browser draws the axis in the
user's own time zone (uPlot's default is local time).

Gaps: a line joins two consecutive readings only if they are at most :func:`gap_limit` apart,
the smaller of ``GAP_FACTOR`` times the median spacing of the chart's readings and
``MAX_GAP_S``.  So a 1 Hz stream breaks at a 5 s dropout, and spot checks taken hours apart
(a blood pressure twice a day) are never joined by a line that suggests values in between.
A break is a row of ``None`` between the two readings (uPlot does not span nulls).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vitalchain.store.model import Reading
from vitalchain.vitals import Vital, class_of

__all__ = [
    "BP",
    "DEFAULT_RANGE",
    "GAP_FACTOR",
    "MAX_GAP_S",
    "RANGES",
    "AlertMark",
    "Chart",
    "chart_key",
    "charts",
    "gap_limit",
    "latest",
    "window",
]

RANGES: Mapping[str, int] = {"1h": 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
DEFAULT_RANGE = "24h"
GAP_FACTOR = 5
MAX_GAP_S = 15 * 60
BP = "bp"
_BP_CLASS = class_of(Vital.SYSTOLIC_BP)


@dataclass(frozen=True, slots=True)
class AlertMark:
    """An alert raised on a reading: drawn at the reading's time and value."""

    vital: Vital
    t: float  # the reading's time, Unix seconds (patient time)
    value: float
    priority: str


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: ``x`` (Unix seconds, ascending, with ``None`` rows at gaps in ``series``),
    a column per vital short name, each series' threshold band (None: none on chain)."""

    key: str
    title: str
    unit: str
    x: list[float]
    series: dict[str, list[float | None]]
    bands: dict[str, tuple[float, float] | None]
    alerts: list[AlertMark]
    span: tuple[float, float] | None = None  # the x axis: the whole range, not the data's

    @property
    def band(self) -> tuple[float, float] | None:
        """The band of a one-vital chart (None for blood pressure: see ``bands``)."""
        return next(iter(self.bands.values())) if len(self.bands) == 1 else None

    @property
    def points(self) -> int:
        return sum(v is not None for column in self.series.values() for v in column)

    def to_json(self) -> dict[str, Any]:
        """What ``window.vitalchainCharts[key]`` holds in the browser."""
        return {
            "title": self.title,
            "unit": self.unit,
            "x": self.x,
            "series": self.series,
            "band": None if self.band is None else list(self.band),
            "bands": {k: None if b is None else list(b) for k, b in self.bands.items()},
            "alerts": [
                {"t": a.t, "value": a.value, "priority": a.priority, "series": a.vital.info.short}
                for a in self.alerts
            ],
            "span": None if self.span is None else list(self.span),
        }


def chart_key(vital: Vital) -> str:
    """The chart a vital is drawn on: ``bp`` for either half of a blood pressure."""
    return BP if class_of(vital) == _BP_CLASS else vital.info.short


def gap_limit(times: Sequence[float]) -> float:
    """The longest spacing a line still joins: min(GAP_FACTOR * median spacing, MAX_GAP_S)
    over the distinct sorted ``times``; MAX_GAP_S when there are fewer than two."""
    distinct = sorted(set(times))
    spacings = [b - a for a, b in itertools.pairwise(distinct)]
    if not spacings:
        return float(MAX_GAP_S)
    return min(GAP_FACTOR * statistics.median(spacings), float(MAX_GAP_S))


def window(readings: Iterable[Reading], range_s: int) -> tuple[float, float] | None:
    """(start, end) in Unix seconds: ``range_s`` back from the latest reading; None if none."""
    end = max((r.t_ms for r in readings), default=None)
    return None if end is None else (end / 1000 - range_s, end / 1000)


def latest(readings: Iterable[Reading]) -> dict[Vital, Reading]:
    """Each vital's latest reading (by its time, then its sequence number), in vital order."""
    found: dict[Vital, Reading] = {}
    for r in readings:
        seen = found.get(r.vital)
        if seen is None or (r.t_ms, r.seq) > (seen.t_ms, seen.seq):
            found[r.vital] = r
    return {v: found[v] for v in sorted(found)}


def charts(
    readings: Iterable[Reading],
    thresholds: Mapping[Vital, tuple[float, float] | None],
    alerts: Iterable[AlertMark] = (),
    *,
    start: float | None = None,
    end: float | None = None,
) -> dict[str, Chart]:
    """The charts of ``readings`` with time in [start, end] (Unix seconds), in vital order.

    ``thresholds``: each vital's on-chain (low, high) in its unit, or None where the chain has
    none (the chart then has no band, rather than the gateway's adult defaults, which are an
    alerting fallback and not this patient's policy).  ``alerts`` in the window are kept with
    the chart of their vital.
    """

    def inside(t: float) -> bool:
        return (start is None or t >= start) and (end is None or t <= end)

    by_chart: dict[str, dict[Vital, list[Reading]]] = {}
    for r in sorted(readings, key=lambda r: (r.t_ms, r.seq)):
        if inside(r.t_ms / 1000):
            by_chart.setdefault(chart_key(r.vital), {}).setdefault(r.vital, []).append(r)
    marks: dict[str, list[AlertMark]] = {}
    for mark in sorted(alerts, key=lambda a: a.t):
        if inside(mark.t):
            marks.setdefault(chart_key(mark.vital), []).append(mark)
    built: dict[str, Chart] = {}
    for key, columns in sorted(by_chart.items(), key=lambda item: min(item[1])):
        vitals = [Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP] if key == BP else sorted(columns)
        x, series = _aligned({v.info.short: columns.get(v, []) for v in vitals})
        first = vitals[0].info
        built[key] = Chart(
            key=key,
            title="Blood pressure" if key == BP else first.display,
            unit=first.symbol,
            x=x,
            series=series,
            bands={v.info.short: thresholds.get(v) for v in vitals},
            alerts=marks.get(key, []),
            span=None if start is None or end is None else (start, end),
        )
    return built


def _aligned(
    columns: Mapping[str, list[Reading]],
) -> tuple[list[float], dict[str, list[float | None]]]:
    """uPlot's aligned data: one row per reading time (more rows where a series has several
    readings at one time), a series' missing values None, and a None row at every gap."""
    times = sorted({r.t_ms for column in columns.values() for r in column})
    at: dict[str, dict[int, list[float]]] = {name: {} for name in columns}
    for name, readings in columns.items():
        for r in readings:
            at[name].setdefault(r.t_ms, []).append(r.value)
    limit = gap_limit([t / 1000 for t in times])
    x: list[float] = []
    series: dict[str, list[float | None]] = {name: [] for name in columns}
    previous: float | None = None
    for t_ms in times:
        t = t_ms / 1000
        if previous is not None and t - previous > limit:
            x.append((previous + t) / 2)  # the break: no line across it
            for gapped in series.values():
                gapped.append(None)
        rows = max(len(values.get(t_ms, [])) for values in at.values())
        for i in range(rows):
            x.append(t)
            for name, out in series.items():
                values = at[name].get(t_ms, [])
                out.append(values[i] if i < len(values) else None)
        previous = t
    return x, series
