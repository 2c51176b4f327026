"""The demo run at a reduced size, through the real CLI, judged on its JSON summary."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vitalchain.cli import app
from vitalchain.services.mosquitto import find_mosquitto

PATIENTS = 4
REDUCED = ["--patients", str(PATIENTS), "--providers", "3", "--minutes", "3", "--seed", "7"]


def run_reduced(out: Path, *extra: str) -> dict[str, Any]:
    """Run ``vitalchain demo`` small, check its exit code and files, return summary.json."""
    result = CliRunner().invoke(app, ["demo", *REDUCED, "--out", str(out), "--json", *extra])
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1])["v"] == 1
    for png in ("vitals.png", "alerts.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (folder / "report.md").read_text()
    assert "tampered block" in report
    assert "![vitals.png](vitals.png)" in report
    return summary


def assert_promises_kept(summary: dict[str, Any]) -> None:
    """What the issue asks the demo to show, each on its own evidence."""
    assert summary["gateways"] == 2
    assert summary["devices_associated"] == 2 * PATIENTS  # a cuff and an oximeter each
    assert summary["refused_messages"] == {}
    assert summary["readings_stored"] >= summary["messages_sent"] > 0
    assert summary["blocks_sealed"] > 0
    assert summary["anchors"] >= 2
    # each cluster's first patient desaturates: ring-signed alerts, recorded and delivered
    assert summary["alerts_raised"] >= 2
    assert summary["alerts_recorded_on_chain"] == summary["alerts_raised"]
    assert summary["alerts_delivered"] >= 2
    assert summary["alert_latency_ms"]["p50"] > 0
    assert summary["revoked_provider"]["refused"] is True
    assert (summary["revoked_provider"]["status"], summary["revoked_provider"]["code"]) == (
        403,
        "no_consent",
    )
    assert summary["provider_fetch"]["readings_decrypted"] > 0
    assert summary["verify"]["ok"] is True
    assert summary["tamper"]["detected"] is True
    assert "block_signature" in summary["tamper"]["failed_checks"]
    # a SpO2-only consent (issue 14 item 3): SpO2 and nothing else, and it still verifies
    scoped = summary["scoped_fetch"]
    assert scoped["vitals_decrypted"] == ["spo2"]
    assert scoped["readings_decrypted"] > 0
    assert scoped["sections_withheld"] > 0
    assert scoped["verify_ok"] is True
    assert all(summary["checks"].values())
    transports = set(summary["transports"].values())
    assert transports == ({"mqtt", "http"} if find_mosquitto() else {"http"})


def assert_data_dir_kept_private(data: Path) -> None:
    """``--data-dir`` kept the deployment and a folder per gateway; everything in it is the
    gateway user's alone; and every anchored message is gone from the journals."""
    assert json.loads((data / "deployment.json").read_text())
    gateways = sorted(p for p in data.iterdir() if p.is_dir())
    assert len(gateways) >= 2
    wrong = {}
    for path in [data, *data.rglob("*")]:
        if path.is_symlink() or path.is_socket():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            wrong[str(path.relative_to(data))] = oct(mode)
    assert wrong == {}
    for gateway in gateways:
        assert {"journal.db", "store.db", "gateway.db", "master.key"} <= {
            p.name for p in gateway.iterdir()
        }
        journal = sqlite3.connect(f"file:{gateway / 'journal.db'}?mode=ro", uri=True)
        try:  # the demo seals and anchors everything at the end: nothing is left in clear
            assert journal.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
            assert journal.execute("SELECT COUNT(*) FROM readings").fetchone() == (0,)
            assert journal.execute("SELECT COUNT(*) FROM seq_ranges").fetchone()[0] > 0
        finally:
            journal.close()


def addresses_in(data: Path) -> dict[str, set[str]]:
    """The patients and devices the run's gateways onboarded, from their state files."""
    found: dict[str, set[str]] = {"patient": set(), "device": set()}
    for state in data.glob("*/gateway.db"):
        db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
        try:
            for device, patient in db.execute("SELECT device, patient FROM sessions"):
                if device:
                    found["device"].add(device)
                if patient:
                    found["patient"].add(patient)
        finally:
            db.close()
    return found
