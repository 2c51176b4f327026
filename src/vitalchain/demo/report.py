"""The demo's report: a summary table on the console, and Markdown, JSON and PNG in a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vitalchain.demo.scenario import DemoRun
from vitalchain.vitals import Vital

__all__ = ["checks", "print_summary", "write_report"]

PLOTTED = (Vital.HEART_RATE, Vital.SPO2, Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP)


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


def _tamper(info: dict[str, Any]) -> str:
    if not info.get("detected"):
        return "NOT detected"
    return f"block {info.get('block')} caught by: {', '.join(info['failed_checks'])}"


def write_report(run: DemoRun, folder: Path) -> list[Path]:
    """summary.json, report.md, vitals.png and alerts.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = run.summary()
    summary["checks"] = checks(run)
    written = [folder / "summary.json", folder / "report.md"]
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots = _plots(run, folder)
    written += plots
    (folder / "report.md").write_text(_markdown(run, summary, [p.name for p in plots]))
    return written


def _markdown(run: DemoRun, summary: dict[str, Any], plots: list[str]) -> str:
    c = run.config
    lines = [
        "# vitalchain demo report",
        "",
        f"Chain: {summary['chain']}. {c.gateways} gateways, {c.providers} providers, "
        f"{c.patients} patients (a BP cuff and a pulse oximeter each), {c.patient_minutes:g} "
        f"patient-minutes of telemetry, seed {c.seed}.",
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
        f"| a SpO2-only consent | {_scoped(summary['scoped_fetch'])} |",
        "",
        "## Checks",
        "",
        *(f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in summary["checks"].items()),
        "",
        "## Timings (seconds)",
        "",
        "| phase | s |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in summary["timings_s"].items()),
        "",
    ]
    if run.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in run.notes), ""]
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return "\n".join(lines)


def _plots(run: DemoRun, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if run.series:
        t0 = min(r["t_ms"] for r in run.series)
        shorts = {r["vital"] for r in run.series}
        vitals = [v for v in PLOTTED if v.info.short in shorts]
        fig, axes = plt.subplots(len(vitals), 1, figsize=(9, 2.2 * len(vitals)), sharex=True)
        axes_list = [axes] if len(vitals) == 1 else list(axes)
        patient = run.fetch.get("patient", "")
        alerts = [n for n in run.notices if n.patient == patient]
        for ax, vital in zip(axes_list, vitals, strict=True):
            short = vital.info.short
            points = sorted((r["t_ms"], r["value"]) for r in run.series if r["vital"] == short)
            xs, ys = [(t - t0) / 1000 for t, _ in points], [v for _, v in points]
            ax.plot(xs, ys, lw=0.8, marker=".", ms=3)
            for notice in alerts:
                if notice.vital == short:
                    ax.axvline((notice.received_at_ms - t0) / 1000, color="red", lw=1)
            ax.set_ylabel(f"{vital.info.display}\n({vital.info.symbol})", fontsize=7)
        axes_list[-1].set_xlabel(
            "device clock, seconds since the first reading (patient time runs faster; red: alerts)"
        )
        axes_list[0].set_title(f"decrypted by a consented provider: patient {patient[:10]}…")
        fig.tight_layout()
        path = folder / "vitals.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
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
    ax.set_xlabel("seconds since the first alert")
    ax.set_ylabel("reading → provider (ms)")
    ax.set_title(f"alert timeline: {len(run.notices)} notifications over WebSocket")
    fig.tight_layout()
    path = folder / "alerts.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written
