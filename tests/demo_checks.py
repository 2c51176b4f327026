"""The demo run at a reduced size, through the real CLI, judged on its JSON summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vitalchain.cli import app
from vitalchain.gateway.broker import find_mosquitto

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
    assert all(summary["checks"].values())
    transports = set(summary["transports"].values())
    assert transports == ({"mqtt", "http"} if find_mosquitto() else {"http"})
