"""``vitalchain demo`` on the embedded chain, reduced; and its refusals of bad arguments."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.demo import (
    PATIENTS,
    addresses_in,
    assert_data_dir_kept_private,
    assert_promises_kept,
    run_reduced,
)
from vitalchain import node
from vitalchain.cli import app
from vitalchain.demo import scenario
from vitalchain.demo.report import checks
from vitalchain.demo.scenario import DemoConfig, DemoRun, run_demo
from vitalchain.services.mosquitto import BrokerError
from vitalchain.services.ports import free_port


def test_the_reduced_demo_keeps_every_promise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Also, issue 12: ``--data-dir`` keeps the run's data; every file and folder in it is
    private (0600 / 0700); what is anchored is gone from the journal; and the run's logs,
    captured at DEBUG from every logger, name no patient and no device (item 14)."""
    data = tmp_path / "data"
    with caplog.at_level(logging.DEBUG):
        summary = run_reduced(tmp_path / "runs", "--data-dir", str(data))
    assert summary["chain"].startswith("embedded")
    assert_promises_kept(summary)
    # issue 17: one patient's devices' receipts, collected, all verified and sealed, anchored
    receipts = summary["receipts"]
    assert receipts["devices"] == 2  # a BP cuff and a pulse oximeter
    assert receipts["collected"] > 0
    assert receipts["verified"] == receipts["sealed"] == receipts["anchored"]
    assert receipts["verified"] == receipts["collected"]
    assert (receipts["not_sealed"], receipts["ok"]) == (0, True)
    assert summary["checks"]["receipts verified"] is True
    assert_data_dir_kept_private(data)
    people = addresses_in(data)
    assert len(people["patient"]) == PATIENTS  # over both clusters
    assert len(people["device"]) == 2 * PATIENTS
    leaks = {
        (kind, record.name, record.getMessage()[:200])
        for kind, found in people.items()
        for record in caplog.records
        for address in found
        if address.lower() in (record.getMessage() + (record.exc_text or "")).lower()
    }
    assert leaks == set()
    assert caplog.records  # the capture did see the run


def test_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_text("x")
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "busy")]
    )
    assert result.exit_code == 2
    assert "not an empty folder" in result.output
    assert not (tmp_path / "runs").exists()


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
        def __init__(self, *_: object, **__: object) -> None:
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
