"""The simulator onboards its wearables and streams accepted readings; the CLI checks input."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.support.gateway import ADMIN_TOKEN, Harness
from vitalchain.cli import app
from vitalchain.device.physiology import DeviceKind
from vitalchain.device.simulator import Simulation
from vitalchain.vitals import Vital


def test_simulation_streams_accepted_readings(harness: Harness) -> None:
    sim = Simulation(
        harness.client,
        ADMIN_TOKEN,
        patients=2,
        kinds=(DeviceKind.PULSE_OXIMETER, DeviceKind.BP_CUFF),
        seed=7,
        # Oximeters report every 4 s of patient time, SpO2 and heart rate as a message each
        # (one per vital class): at 80x that is 40 messages/s per device, under the gateway's
        # 50/s rate limit (a faster clock is refused, rightly).
        speedup=80,
    )
    sim.onboard()
    before = harness.gateway.store.count_readings()
    stats = sim.run(8 * 60)
    assert stats.refused == {}
    assert stats.sent_messages > 10
    # oximeters send SpO2 and heart rate apart, cuffs systolic + diastolic together:
    # two readings a tick either way, but one message per vital class
    cuffs = [
        m for m in harness.gateway.store.messages(limit=10_000) if len(m.message.readings) == 2
    ]
    assert stats.accepted_readings == stats.sent_messages + len(cuffs)
    assert all(
        {r.vital for r in m.message.readings} == {Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP}
        for m in cuffs
    )
    assert harness.gateway.store.count_readings() == before + stats.accepted_readings
    patients = {m.message.patient for m in harness.gateway.store.messages(limit=10_000)}
    assert set(sim.patients) <= patients


def test_simulate_cli_refuses_bad_arguments(tmp_path: Path) -> None:
    # the admin token comes from the environment (never the command line, see docs/cli.md)
    runner = CliRunner(env={"VITALCHAIN_GATEWAY_ADMIN_TOKEN": "x" * 16})
    result = runner.invoke(app, ["simulate", "--transport", "carrier-pigeon"])
    assert result.exit_code == 2
    assert "transport" in result.output
    result = runner.invoke(app, ["simulate"], env={"VITALCHAIN_GATEWAY_ADMIN_TOKEN": None})
    assert result.exit_code == 2
    assert "admin token" in result.output
    result = runner.invoke(app, ["simulate", "--patients", "0"])
    assert result.exit_code == 2
    result = runner.invoke(
        app, ["simulate", "--gateway", "http://127.0.0.1:9", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "onboarding failed" in result.output
