"""``vitalchain demo`` on the embedded chain, reduced; and its refusals of bad arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.demo_checks import assert_promises_kept, run_reduced
from vitalchain import node
from vitalchain.cli import app
from vitalchain.demo import scenario
from vitalchain.demo.report import checks
from vitalchain.demo.scenario import DemoConfig, DemoRun, run_demo
from vitalchain.gateway.broker import BrokerError
from vitalchain.ledger.devnode import free_port


def test_the_reduced_demo_keeps_every_promise(tmp_path: Path) -> None:
    summary = run_reduced(tmp_path / "runs")
    assert summary["chain"].startswith("embedded")
    assert_promises_kept(summary)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patients", "1"], "--patients"),
        (["--gateways", "3", "--patients", "4"], "at least 2 per gateway"),
        (["--providers", "1"], "--providers"),
        (["--minutes", "0"], "--minutes"),
        (["--rpc-url", "ftp://127.0.0.1:1"], "http(s)://"),
        (["--rpc-url", f"http://127.0.0.1:{free_port()}"], "no Ethereum JSON-RPC node"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []  # no report folder for a refused run


def _small(tmp_path: Path) -> DemoRun:
    return run_demo(DemoConfig(patients=4, patient_minutes=1.0, seed=3), tmp_path)


def test_without_mosquitto_the_demo_says_so_and_streams_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scenario, "find_mosquitto", lambda: None)  # as on a machine without it
    run = _small(tmp_path)
    assert set(run.transports.values()) == {"http"}
    assert run.notes == ["mosquitto is not installed: every device streams over HTTP only"]
    assert all(checks(run).values())


def test_a_broker_that_cannot_start_falls_back_to_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unstartable:  # stands in for a mosquitto that is installed but fails to start
        def __init__(self, *_: object) -> None:
            pass

        def __enter__(self) -> None:
            raise BrokerError("mosquitto exited at start", code="broker_failed")

        def __exit__(self, *_: object) -> None:
            pass

    monkeypatch.setattr(node, "Mosquitto", Unstartable)
    run = _small(tmp_path)
    assert set(run.transports.values()) == {"http"}
    assert any("could not start (broker_failed)" in note for note in run.notes)
    assert run.devices_associated == 8
    assert run.readings_stored > 0
