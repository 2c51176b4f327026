"""The demo's report: a summary table on the console, and Markdown, JSON and PNG in a folder.

``report.md`` is written for a clinician first (issue 15 item 12): a table per patient, the
alert list and the vital-sign charts, all in patient time, with display units and the
threshold bands the gateway applied; the engineering evidence (steps, checks, timings, the
alert latency figure) follows under "Engineering figures".  Charts are drawn from
:func:`prepare_series`, so what they show is testable without looking at pixels.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vitalchain.demo.scenario import Band, DemoRun, Notice, PatientReading
from vitalchain.logs import pseudonym
from vitalchain.vitals import Vital, to_fixed

__all__ = [
    "AlertRow",
    "PatientRow",
    "Series",
    "alert_rows",
    "checks",
    "clock_label",
    "patient_rows",
    "prepare_series",
    "print_summary",
    "screenshots",
    "write_report",
]

PLOTTED = (Vital.HEART_RATE, Vital.SPO2, Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP)
PRIORITIES = ("high", "medium", "low")  # IEC 60601-1-8, docs/alarms.md
GAP_INTERVALS = 3  # a line breaks where readings are more than this many intervals apart
MAX_CHARTS = 6  # vital-sign charts: the featured patient, then patients with alerts
BP = (Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP)  # one chart, two series
# Names as a chart or a table cell gives them (VitalInfo.display is the LOINC-style long name).


PRIORITY_COLOURS = {"high": "#d62728", "medium": "#ff9f1c", "low": "#17becf"}


def checks(run: DemoRun) -> dict[str, bool]:
    """What the demo promises, each checked on the run's evidence (exit code 1 if one fails)."""
    expected_devices = 2 * run.config.patients
    return {
        "every device associated on chain": run.devices_associated == expected_devices,
        "readings stored": run.readings_stored > 0,
        "blocks sealed and anchored": run.blocks_sealed > 0 and run.anchors > 0,
        "alerts delivered to providers": len(run.notices) > 0,
        "the revoked provider is refused": bool(run.revoked.get("refused")),
        "a consented provider decrypts": run.fetch.get("readings_decrypted", 0) > 0,
        "untampered blocks verify": bool(run.verify.get("ok")),
        "the tampered block is caught": bool(run.tamper.get("detected")),
        # every receipt a patient's devices kept verifies, and its readings were sealed
        "receipts verified": bool(run.receipts.get("ok"))
        and run.receipts.get("collected", 0) > 0
        and run.receipts.get("verified") == run.receipts.get("collected")
        and run.receipts.get("not_sealed") == 0,
        **(
            {
                "a SpO2-only consent gets SpO2 only, verified": run.scoped.get("vitals_decrypted")
                == ["spo2"]
                and bool(run.scoped.get("verify_ok"))
            }
            if run.config.providers > 2
            else {}
        ),
    }


def print_summary(run: DemoRun, console: Console) -> None:
    s = run.summary()
    table = Table("", "", title="vitalchain demo", show_header=False)
    rows = [
        ("chain", s["chain"]),
        (
            "gateways (groups: transport)",
            ", ".join(f"{g}: {t}" for g, t in s["transports"].items()),
        ),
        ("providers / patients", f"{s['providers']} / {s['patients']}"),
        ("devices associated on chain", str(s["devices_associated"])),
        ("messages sent / readings stored", f"{s['messages_sent']:,} / {s['readings_stored']:,}"),
        ("blocks sealed / anchors", f"{s['blocks_sealed']:,} / {s['anchors']}"),
        (
            "alerts raised / on chain / delivered",
            f"{s['alerts_raised']} / {s['alerts_recorded_on_chain']} / {s['alerts_delivered']}",
        ),
        (
            "alert latency p50 / max",
            f"{s['alert_latency_ms']['p50']} / {s['alert_latency_ms']['max']} ms",
        ),
        ("revoked provider", _revoked(s["revoked_provider"])),
        (
            "provider fetch",
            f"{s['provider_fetch'].get('blocks', 0)} blocks, "
            f"{s['provider_fetch'].get('readings_decrypted', 0)} readings decrypted",
        ),
        ("verify", "ok" if s["verify"].get("ok") else "FAILED"),
        ("SpO2-only consent", _scoped(s["scoped_fetch"])),
        ("tampered block", _tamper(s["tamper"])),
        ("receipts (one patient)", _receipts(s["receipts"])),
        ("wall time", f"{s['timings_s'].get('total', 0):.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for note in run.notes:
        console.print(f"[yellow]note: {note}")
    for name, ok in checks(run).items():
        console.print(f"{'[green]✓' if ok else '[bold red]✗'} {name}")


def _scoped(info: dict[str, Any]) -> str:
    if not info:
        return "not run (fewer than 3 providers)"
    seen = ", ".join(info["vitals_decrypted"]) or "none"
    return (
        f"{info['readings_decrypted']} readings of {seen}; "
        f"{info['sections_withheld']} other sections withheld; "
        f"verify {'ok' if info['verify_ok'] else 'FAILED'}"
    )


def _revoked(info: dict[str, Any]) -> str:
    if not info.get("refused"):
        return "NOT refused"
    return f"refused ({info['status']} {info['code']})"


def _receipts(info: dict[str, Any]) -> str:
    if not info:
        return "not collected"
    return (
        f"{info['collected']} collected from {info['devices']} devices, {info['verified']} "
        f"verified, {info['sealed']} sealed, {info['anchored']} anchored, "
        f"{info['not_sealed']} not sealed"
    )


def _tamper(info: dict[str, Any]) -> str:
    if not info.get("detected"):
        return "NOT detected"
    return f"block {info.get('block')} caught by: {', '.join(info['failed_checks'])}"


@dataclass(frozen=True)
class PatientRow:
    """One line of the per-patient table."""

    patient: str  # the run's pseudonym (``vitalchain.logs.pseudonym``), never the address
    group: int
    readings: int
    alerts: dict[str, int]  # priority → distinct alerts delivered to providers
    out_of_range_s: dict[str, float]  # vital short → patient seconds outside the band
    any_out_of_range_s: float  # the union over vitals
    monitored_s: float


@dataclass(frozen=True)
class AlertRow:
    """One alert (distinct ``alert_id``), as its providers were notified of it."""

    alert_id: str
    patient: str  # pseudonym, or "gateway" for a gateway-wide technical alarm
    kind: str
    vital: str | None  # VitalInfo.short; a technical alarm's condition is in ``condition``
    condition: str | None
    value: float | None
    unit: str  # the display unit (VitalInfo.symbol)
    priority: str
    patient_s: float | None  # patient clock time of the reading that raised it
    delay_ms: float  # reading received by the gateway → first provider notification received
    band: tuple[float, float] | None


@dataclass(frozen=True)
class Series:
    """What one line of a chart plots: patient clock times, values with NaN at each break."""

    vital: Vital
    times_s: list[float]  # clock seconds: the patient's clock at start + patient time
    values: list[float]  # NaN: the line breaks here (no line joins readings far apart)
    band: Band | None
    alerts: list[tuple[float, float, str]] = field(default_factory=list)  # (t, value, priority)


def clock_label(clock_s: float, *, seconds: bool = False) -> str:
    """A patient clock time as people read it: ``HH:MM`` (``HH:MM:SS``), modulo a day."""
    whole = math.floor(clock_s)
    h, m, sec = whole // 3600 % 24, whole // 60 % 60, whole % 60
    return f"{h:02d}:{m:02d}:{sec:02d}" if seconds else f"{h:02d}:{m:02d}"


def _out_of_range(value: float, band: Band) -> bool:
    """The contract's comparison (inclusive bounds, two-decimal fixed point)."""
    v = to_fixed(value)
    return v < to_fixed(band.low) or v > to_fixed(band.high)


def _held(
    readings: Sequence[PatientReading], run: DemoRun, end_s: float
) -> list[tuple[str, float, float, bool]]:
    """Each reading's span of patient time: until the next reading of the same vital, for at
    most its device's sampling interval, and not past ``end_s``; with whether it is out."""
    spans: list[tuple[str, float, float, bool]] = []
    by_vital: dict[str, list[PatientReading]] = {}
    for r in readings:
        if r.patient_s is not None:
            by_vital.setdefault(r.vital, []).append(r)
    for vital, mine in by_vital.items():
        band = run.thresholds.get(mine[0].patient, {}).get(vital)
        if band is None:
            continue
        mine.sort(key=lambda r: r.patient_s or 0.0)
        for i, r in enumerate(mine):
            start = r.patient_s or 0.0
            stop = start + run.sampling_s.get(r.device, 0.0)
            if i + 1 < len(mine):
                stop = min(stop, mine[i + 1].patient_s or 0.0)
            stop = min(stop, end_s)
            if stop > start:
                spans.append((vital, start, stop, _out_of_range(r.value, band)))
    return spans


def _union_length(spans: Iterable[tuple[float, float]]) -> float:
    total, reach = 0.0, -math.inf
    for start, stop in sorted(spans):
        if stop <= reach:
            continue
        total += stop - max(start, reach)
        reach = stop
    return total


def _distinct_alerts(notices: Sequence[Notice]) -> dict[str, list[Notice]]:
    alerts: dict[str, list[Notice]] = {}
    for n in notices:
        alerts.setdefault(n.alert_id, []).append(n)
    return alerts


def _patient_tag(address: str) -> str:
    return pseudonym(address) if address.startswith("0x") else "gateway"


def patient_rows(run: DemoRun) -> list[PatientRow]:
    """One row per patient, in onboarding order.  Time out of range is given per vital and
    for any vital (the union), as patient time (see :func:`_held`)."""
    end_s = run.config.patient_minutes * 60
    by_patient: dict[str, list[PatientReading]] = {}
    for r in run.readings:
        by_patient.setdefault(r.patient, []).append(r)
    priorities: dict[str, Counter[str]] = {}
    for alert in _distinct_alerts(run.notices).values():
        first = alert[0]
        priorities.setdefault(first.patient.lower(), Counter())[first.priority or "medium"] += 1
    rows = []
    for patient, group in run.patient_groups.items():
        readings = by_patient.get(patient, [])
        spans = _held(readings, run, end_s)
        per_vital: dict[str, list[tuple[float, float]]] = {}
        for vital, start, stop, out in spans:
            if out:
                per_vital.setdefault(vital, []).append((start, stop))
        counts = priorities.get(patient.lower(), Counter())
        rows.append(
            PatientRow(
                pseudonym(patient),
                group,
                len(readings),
                {p: counts.get(p, 0) for p in PRIORITIES},
                {v: _union_length(s) for v, s in sorted(per_vital.items())},
                _union_length(s for spans_ in per_vital.values() for s in spans_),
                end_s,
            )
        )
    return rows


def alert_rows(run: DemoRun) -> list[AlertRow]:
    """One row per distinct alert, by the patient time of its reading (technical alarms,
    which have none, last).  Delay: from the triggering reading's arrival at the gateway to
    the first notification a provider's SDK received (``latency_ms``; repeats excluded)."""
    rows = []
    for alert_id, notices in _distinct_alerts(run.notices).items():
        first = notices[0]
        firsts = [n.latency_ms for n in notices if n.repeat == 0] or [n.latency_ms for n in notices]
        vital = Vital.parse(first.vital) if first.vital else None
        band = (first.low, first.high) if first.low is not None and first.high is not None else None
        rows.append(
            AlertRow(
                alert_id,
                _patient_tag(first.patient),
                first.kind,
                first.vital,
                first.condition,
                first.value,
                vital.info.symbol if vital else "",
                first.priority or "medium",
                _clock(run, first.patient, run.patient_s(first.device, first.reading_t_ms)),
                min(firsts),
                band,
            )
        )
    rows.sort(key=lambda r: (r.patient_s is None, r.patient_s or 0.0, r.patient))
    return rows


def _clock(run: DemoRun, patient: str, patient_s: float | None) -> float | None:
    if patient_s is None:
        return None
    return run.patient_clock_s.get(patient, 0.0) + patient_s


def prepare_series(run: DemoRun, patient: str, vital: Vital) -> Series:
    """One vital of one patient, ready to plot: patient clock times in order, a NaN between
    two readings more than ``GAP_INTERVALS`` sampling intervals apart, the band the gateway
    applied, and the alerts at the time and value of the reading that raised them."""
    short = vital.info.short
    mine = sorted(
        (
            r
            for r in run.readings
            if r.patient == patient and r.vital == short and r.patient_s is not None
        ),
        key=lambda r: r.patient_s or 0.0,
    )
    times: list[float] = []
    values: list[float] = []
    for i, r in enumerate(mine):
        t = _clock(run, patient, r.patient_s) or 0.0
        if i:
            gap = (r.patient_s or 0.0) - (mine[i - 1].patient_s or 0.0)
            interval = run.sampling_s.get(r.device, 0.0)
            if interval > 0 and gap > GAP_INTERVALS * interval:
                times.append(t - gap / 2)
                values.append(math.nan)
        times.append(t)
        values.append(r.value)
    alerts = []
    for row in alert_rows(run):
        if (
            row.vital == short
            and row.patient == pseudonym(patient)
            and row.patient_s is not None
            and row.value is not None
        ):
            alerts.append((row.patient_s, row.value, row.priority))
    return Series(vital, times, values, run.thresholds.get(patient, {}).get(short), alerts)


def screenshots(folder: Path) -> list[str]:
    """HOOK (portal screenshots, issue 15 item 12): the ``*.png`` under ``screenshots/`` of
    the run folder, as paths relative to it.  Whatever takes them (the portal's browser)
    writes them there before :func:`write_report`; none: no section."""
    shots = folder / "screenshots"
    if not shots.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in shots.rglob("*.png"))


def write_report(run: DemoRun, folder: Path) -> list[Path]:
    """summary.json, report.md, vitals.png (and one chart per other patient with alerts,
    up to ``MAX_CHARTS``) and alerts.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = run.summary()
    summary["checks"] = checks(run)
    written = [folder / "summary.json", folder / "report.md"]
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    charts = _vital_charts(run, folder)
    engineering = _engineering_plots(run, folder)
    written += charts + engineering
    (folder / "report.md").write_text(
        _markdown(
            run,
            summary,
            [p.name for p in charts],
            [p.name for p in engineering],
            screenshots(folder),
        )
    )
    return written


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole == 0:
        return "0"
    m, s = divmod(whole, 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:g} {unit}".rstrip()


def _band_lines(run: DemoRun) -> list[str]:
    """The bands, once per (vital, band, source), with how many patients share each."""
    shared: Counter[tuple[str, float, float, bool]] = Counter()
    for bands in run.thresholds.values():
        for short, band in bands.items():
            shared[(short, band.low, band.high, band.on_chain)] += 1
    lines = []
    for (short, low, high, on_chain), n in sorted(shared.items()):
        vital = Vital.parse(short)
        source = "on-chain threshold" if on_chain else "adult default, none set on chain"
        lines.append(
            f"- {vital.info.label}: {low:g} to {high:g} {vital.info.symbol} ({source}; {n} patient"
            f"{'s' if n != 1 else ''})"
        )
    return lines


def _clinical(run: DemoRun, charts: list[str], shots: list[str]) -> list[str]:
    c = run.config
    rows = patient_rows(run)
    alerts = alert_rows(run)
    lines = [
        "## Patients",
        "",
        f"{len(rows)} patients, {c.patient_minutes:g} minutes of patient time each. Times are "
        "the patient's clock (the simulated day, HH:MM), not the devices' wall-clock stamps. "
        "Patients are named by this run's pseudonyms (the `p:` tags the gateways' logs use); "
        "the report names no address.",
        "",
        "| patient | group | readings | alerts high | alerts medium | alerts low "
        "| time out of range, any vital | by vital |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        by_vital = "; ".join(
            f"{Vital.parse(v).info.label} {_duration(s)}"
            for v, s in row.out_of_range_s.items()
            if round(s) > 0
        )
        share = 100 * row.any_out_of_range_s / row.monitored_s if row.monitored_s else 0.0
        lines.append(
            f"| {row.patient} | {row.group} | {row.readings:,} | {row.alerts['high']} "
            f"| {row.alerts['medium']} | {row.alerts['low']} "
            f"| {_duration(row.any_out_of_range_s)} ({share:.0f} %) | {by_vital or '—'} |"
        )
    lines += [
        "",
        "Readings: as a consented provider fetched and decrypted them. Alerts: distinct "
        "alerts delivered to providers, by priority (IEC 60601-1-8, docs/alarms.md). Time out "
        "of range: patient time during which the latest reading of a vital lay outside its "
        "band (a reading counts until the next one, for at most one sampling interval of its "
        "device); 'any vital' is the union over the vitals, as a share of the time "
        "monitored. Threshold bands the gateways applied:",
        "",
        *_band_lines(run),
        "",
        "## Alerts",
        "",
    ]
    if alerts:
        lines += [
            "| patient time | patient | vital | value | band | priority | delay (ms) |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in alerts:
            vital = Vital.parse(a.vital).info.label if a.vital else f"technical: {a.condition}"
            band = f"{a.band[0]:g} to {a.band[1]:g} {a.unit}" if a.band else "—"
            when = clock_label(a.patient_s, seconds=True) if a.patient_s is not None else "—"
            lines.append(
                f"| {when} | {a.patient} | {vital} | {_value(a.value, a.unit)} | {band} "
                f"| {a.priority} | {a.delay_ms:.0f} |"
            )
        lines += [
            "",
            "Patient time: of the reading that raised the alert. Delay: from that reading's "
            "arrival at the gateway to the first notification a provider's SDK received over "
            "WebSocket (the alarm-signal generation delay of docs/alarms.md, plus delivery).",
            "",
        ]
    else:
        lines += ["No alert was raised.", ""]
    if charts:
        lines += [
            "## Vital signs",
            "",
            "Shaded: the threshold band; circles: alerts, at the reading that raised them, "
            "coloured by priority; a line breaks where readings are more than "
            f"{GAP_INTERVALS} sampling intervals apart.",
            "",
            *(f"![{p}]({p})" for p in charts),
            "",
        ]
    if shots:
        lines += ["## Portal screenshots", "", *(f"![{s}]({s})" for s in shots), ""]
    return lines


def _markdown(
    run: DemoRun,
    summary: dict[str, Any],
    charts: list[str],
    plots: list[str],
    shots: list[str] = [],  # noqa: B006 - read only
) -> str:
    c = run.config
    lines = [
        "# vitalchain demo report",
        "",
        f"Chain: {summary['chain']}. {c.gateways} gateways, {c.providers} providers, "
        f"{c.patients} patients (a BP cuff and a pulse oximeter each), {c.patient_minutes:g} "
        f"patient-minutes of telemetry, seed {c.seed}.",
        "",
        *_clinical(run, charts, shots),
        "## Engineering figures",
        "",
        "| step | evidence |",
        "|---|---|",
        f"| onboarding (session, ticket, token, on-chain association) | "
        f"{summary['devices_associated']} devices associated |",
        f"| telemetry ({', '.join(sorted(set(summary['transports'].values())))}) | "
        f"{summary['messages_sent']:,} messages, {summary['readings_stored']:,} readings stored, "
        f"refused: {summary['refused_messages'] or 'none'} |",
        f"| sealing and anchoring | {summary['blocks_sealed']:,} blocks, "
        f"{summary['anchors']} anchored roots |",
        f"| alerts (ring-signed, encrypted) | {summary['alerts_raised']} raised, "
        f"{summary['alerts_recorded_on_chain']} in the chain's alert log, "
        f"{summary['alerts_delivered']} delivered over WebSocket; latency p50 "
        f"{summary['alert_latency_ms']['p50']} ms, max {summary['alert_latency_ms']['max']} ms |",
        f"| consent revoke | {_revoked(summary['revoked_provider'])} |",
        f"| provider fetch and decrypt | {summary['provider_fetch'].get('blocks', 0)} blocks, "
        f"{summary['provider_fetch'].get('readings_decrypted', 0)} readings |",
        f"| verify against the chain | {'ok' if summary['verify'].get('ok') else 'FAILED'} "
        f"({summary['verify'].get('checks', 0)} checks) |",
        f"| a tampered block | {_tamper(summary['tamper'])} |",
        f"| signed receipts (one patient's devices) | {_receipts(summary['receipts'])} |",
        f"| a SpO2-only consent | {_scoped(summary['scoped_fetch'])} |",
        "",
        "### Checks",
        "",
        *(f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in summary["checks"].items()),
        "",
        "### Timings (seconds)",
        "",
        "| phase | s |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in summary["timings_s"].items()),
        "",
    ]
    if run.notes:
        lines += ["### Notes", "", *(f"- {n}" for n in run.notes), ""]
    if plots:
        lines += ["### Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return "\n".join(lines)


def _charted_patients(run: DemoRun) -> list[str]:
    """The featured patient (the one the care steps fetched), then those with alerts."""
    featured = run.fetch.get("patient") or next(iter(run.patient_groups), None)
    chosen = [featured] if featured in run.patient_groups else []
    alerted = {n.patient.lower() for n in run.notices if n.kind == "threshold"}
    chosen += [p for p in run.patient_groups if p.lower() in alerted and p not in chosen]
    return chosen[:MAX_CHARTS]


def _time_step(span_s: float) -> float:
    for step in (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600):
        if span_s / step <= 10:
            return float(step)
    return 43200.0


def _vital_charts(run: DemoRun, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    written = []
    end_s = run.config.patient_minutes * 60
    for n, patient in enumerate(_charted_patients(run)):
        shorts = {r.vital for r in run.readings if r.patient == patient}
        panels: list[tuple[Vital, ...]] = []
        for vital in Vital:
            if vital.info.short not in shorts or vital == Vital.DIASTOLIC_BP:
                continue
            panels.append(BP if vital == Vital.SYSTOLIC_BP else (vital,))
        panels.sort(key=lambda p: [*PLOTTED, *Vital].index(p[0]))
        if not panels:
            continue
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True)
        axes_list = [axes] if len(panels) == 1 else list(axes)
        start = run.patient_clock_s.get(patient, 0.0)
        for ax, panel in zip(axes_list, panels, strict=True):
            _draw_panel(ax, [prepare_series(run, patient, v) for v in panel], Patch)
        last = axes_list[-1]
        last.set_xlim(start - 0.02 * end_s, start + 1.02 * end_s)
        last.xaxis.set_major_locator(MultipleLocator(_time_step(end_s)))
        last.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock_label(x)))
        last.set_xlabel("patient time (the patient's clock, HH:MM)")
        tag = pseudonym(patient)
        axes_list[0].set_title(f"patient {tag}: vital signs, bands and alerts")
        fig.tight_layout()
        path = folder / ("vitals.png" if n == 0 else f"vitals-{tag.replace(':', '-')}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _draw_panel(ax: Any, series: list[Series], patch: Any) -> None:
    """One axis: each series' band shaded, its line (broken at NaN), its alert markers."""
    colours = ["#1f77b4", "#9467bd"]
    lows, highs = [], []
    handles = []
    for k, s in enumerate(series):
        colour = colours[k % len(colours)]
        name = s.vital.info.label
        if len(series) > 1:
            name = "systolic" if s.vital == Vital.SYSTOLIC_BP else "diastolic"
        if s.band is not None:
            ax.axhspan(s.band.low, s.band.high, color=colour, alpha=0.10, lw=0)
            lows.append(s.band.low)
            highs.append(s.band.high)
        spot = s.vital in BP  # a cuff's spot readings: large markers
        (line,) = ax.plot(
            s.times_s,
            s.values,
            lw=1.0,
            marker="v" if spot and k == 0 else "^" if spot else "o",
            ms=7 if spot else 2.5,
            color=colour,
        )
        line.set_label(name)
        handles.append(line)
        finite = [v for v in s.values if not math.isnan(v)]
        lows += finite
        highs += finite
        for t, value, priority in s.alerts:
            ax.scatter(
                [t],
                [value],
                s=90,
                facecolors="none",
                edgecolors=PRIORITY_COLOURS.get(priority, "black"),
                linewidths=2,
                zorder=5,
            )
    for priority in sorted({a[2] for s in series for a in s.alerts}, key=PRIORITIES.index):
        handles.append(
            patch(facecolor="none", edgecolor=PRIORITY_COLOURS[priority], label=f"{priority} alert")
        )
    for k, s in enumerate(series):
        if s.band is not None:
            band = "threshold band" if len(series) == 1 else f"{handles[k].get_label()} band"
            handles.append(patch(color=colours[k % len(colours)], alpha=0.15, label=band))
    if lows and highs:
        low, high = min(lows), max(highs)
        pad = max(0.08 * (high - low), 1.0)
        ax.set_ylim(low - pad, high + pad)
    unit = series[0].vital.info.symbol if series else ""
    title = "Blood pressure" if len(series) > 1 else series[0].vital.info.label
    ax.set_ylabel(f"{title}\n({unit})", fontsize=8)
    ax.grid(alpha=0.25)
    ax.legend(handles=handles, fontsize=7, loc="upper right", ncols=min(len(handles), 4))


def _engineering_plots(run: DemoRun, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    if run.notices:
        t0 = min(n.received_at_ms for n in run.notices)
        groups = sorted({n.group_id for n in run.notices})
        for group in groups:
            mine = [n for n in run.notices if n.group_id == group]
            ax.scatter(
                [(n.received_at_ms - t0) / 1000 for n in mine],
                [n.latency_ms for n in mine],
                label=f"group {group}",
                s=18,
            )
        ax.legend(fontsize=8)
    ax.set_xlabel("wall-clock seconds since the first alert's reading reached its gateway")
    ax.set_ylabel("reading → provider (ms)")
    ax.set_title(f"alert delivery latency: {len(run.notices)} notifications over WebSocket")
    fig.tight_layout()
    path = folder / "alerts.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
