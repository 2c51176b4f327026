"""``vitalchain alerts``: watch, list, ack, snooze (issue 13, item 10).

Every bad argument is one line ``error: … (code)``, exit 2, before anything is contacted; a
gateway that cannot be reached, and a refusal by a real one (unknown alert, not a
recipient), are one line and exit 1; a snooze duration the gateway does not offer is the
argument's fault (exit 2) and the line lists the offered ones.  ``alerts watch`` is run
across a restart of the gateway's HTTP edge: it reconnects, fetches what it missed, and
shows each alert once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import Result

from tests.support.alerts import SEALING
from tests.support.cli import ADDRESS, NOWHERE, invoke, one_line
from tests.support.delivery import Edge, care_team, raise_low
from tests.support.node import World, make_world
from tests.support.waiting import wait_for
from vitalchain.cli.alerts import describe
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import Ledger
from vitalchain.vitals import Vital

ALERT_ID = "ab" * 16


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keyfile(tmp_path, PrivateKey.generate())


def keyfile(folder: Path, key: PrivateKey) -> Path:
    path = folder / f"{key.address}.key"
    path.write_text(key.secret.hex() + "\n")
    path.chmod(0o600)
    return path


# -- bad arguments: exit 2, one line, its code, nothing contacted -------------------------------


def bad_arguments(key: Path, tmp: Path) -> list[tuple[list[str], str, str]]:
    k = str(key)
    junk = tmp / "junk.key"
    junk.write_text("not a key\n")
    missing = str(tmp / "missing.key")
    snooze = ["alerts", "snooze", "--key", k, "--vital", "spo2", "--minutes", "15"]
    return [
        # the key file
        (["alerts", "watch", "--key", missing], "unreadable_file", "--key"),
        (["alerts", "list", "--key", str(junk)], "not_a_key", "--key"),
        (["alerts", "ack", ALERT_ID, "--key", missing], "unreadable_file", "--key"),
        (
            ["alerts", "snooze", "--key", str(tmp), "--vital", "spo2", "--minutes", "15"],
            "unreadable_file",
            "--key",
        ),
        # the URL
        (["alerts", "watch", "--key", k, "--gateway", "ws://x"], "invalid_url", "--gateway"),
        (["alerts", "list", "--key", k, "--gateway", "gateway"], "invalid_url", "--gateway"),
        (
            ["alerts", "ack", ALERT_ID, "--key", k, "--gateway", "ftp://x"],
            "invalid_url",
            "--gateway",
        ),
        ([*snooze, "--gateway", "x"], "invalid_url", "--gateway"),
        # the alert id, durations, vitals, the patient, the time zone
        (["alerts", "ack", "xyz", "--key", k], "invalid_alert_id", "ALERT_ID"),
        (["alerts", "ack", "ab" * 17, "--key", k], "invalid_alert_id", "ALERT_ID"),
        (["alerts", "list", "--key", k, "--since", "soon"], "invalid_duration", "--since"),
        (["alerts", "list", "--key", k, "--since", "0h"], "invalid_duration", "--since"),
        ([*snooze[:-1], "0"], "invalid_duration", "--minutes"),
        ([*snooze[:-1], "a while"], "invalid_duration", "--minutes"),
        ([*snooze[:-1], "-5"], "invalid_duration", "--minutes"),
        ([*snooze[:-1], "inf"], "invalid_duration", "--minutes"),
        (
            ["alerts", "snooze", "--key", k, "--vital", "toaster", "--minutes", "15"],
            "unknown_vital",
            "--vital",
        ),
        ([*snooze, "--patient", "0x12"], "invalid_address", "--patient"),
        ([*snooze, "--patient", ADDRESS[:-1] + "D"], "bad_checksum", "--patient"),
        (["alerts", "watch", "--key", k, "--tz", "Mars/Olympus"], "unknown_time_zone", "--tz"),
        (["alerts", "watch", "--key", k, "--count", "0"], "invalid_argument", "--count"),
        (["alerts", "snooze", "--key", k, "--minutes", "15"], "missing_argument", "--vital"),
    ]


def test_every_bad_argument_is_one_line_with_its_code(key: Path, tmp_path: Path) -> None:
    for args, code, word in bad_arguments(key, tmp_path):
        one_line(invoke(*args, "--gateway", NOWHERE) if "--gateway" not in args else
                 invoke(*args), code, word)  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["alerts", "watch", "--count", "1"],
        ["alerts", "list"],
        ["alerts", "ack", ALERT_ID],
        ["alerts", "snooze", "--vital", "spo2", "--minutes", "15"],
    ],
    ids=lambda a: a[1],
)
def test_an_unreachable_gateway_is_one_line_exit_1(key: Path, args: list[str]) -> None:
    one_line(invoke(*args, "--key", str(key), "--gateway", NOWHERE), "unreachable", exit_code=1)


# -- the patient's terms -----------------------------------------------------------------------


def test_an_alert_reads_in_the_patients_terms() -> None:
    at = datetime(2026, 12, 2, 13, 3, 21, tzinfo=UTC).timestamp()
    body = {"kind": "threshold", "vital": "spo2", "unit": "%", "direction": -1, "value": 84.0,
            "low": 90.0, "high": 100.0, "at": at, "patient": ADDRESS}  # fmt: skip
    notice = {"priority": "high", "repeat": 0, "alert_id": ALERT_ID, "tier": 0}
    line = describe(body, notice, ZoneInfo("Europe/Paris"), now=at)
    assert "HIGH" in line
    assert "blood oxygen (SpO2) 84 %, below 90 %" in line
    assert "at 14:03:21 CET" in line  # the reading's local time, not the gateway's UTC
    assert f"patient {ADDRESS}" in line
    assert f"alert {ALERT_ID}" in line
    fever = {**body, "vital": "temperature", "unit": "Cel", "direction": 1, "value": 39.2,
             "high": 38.0}  # fmt: skip
    line = describe(fever, {**notice, "priority": "medium", "repeat": 2}, ZoneInfo("UTC"),
                    now=at + 3 * 86400)  # fmt: skip
    assert "MEDIUM" in line
    assert "(reminder 2)" in line
    assert "temperature 39.2 °C, above 38 °C" in line
    assert "at 2026-12-02 13:03:21 UTC" in line  # another day: the date too
    stale = {"kind": "stale", "device": ADDRESS, "last_seen": at - 900, "at": at}
    line = describe(stale, {**notice, "priority": "low"}, ZoneInfo("UTC"), now=at)
    assert f"no data from device {ADDRESS} since 12:48:21 UTC" in line
    assert "LOW" in line
    stale_v2 = {"kind": "technical", "condition": "device_stale", **stale}
    assert describe(stale_v2, notice, ZoneInfo("UTC"), now=at) == describe(stale, notice,
                    ZoneInfo("UTC"), now=at)  # fmt: skip
    outage = {"kind": "technical", "condition": "chain_unreachable", "down_since": at, "at": at}
    line = describe(outage, notice, ZoneInfo("UTC"), now=at)
    assert "cannot reach the chain (since 13:03:21 UTC)" in line
    assert "patient" not in line  # the gateway's own alarm names no patient


# -- against a real gateway --------------------------------------------------------------------


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from make_world(chain, tmp_path / "node", SEALING)


@pytest.fixture
def edge(world: World) -> Iterator[Edge]:
    edge = Edge(world)
    edge.start()
    yield edge
    edge.stop()


def test_ack_and_its_refusals(world: World, edge: Edge, tmp_path: Path) -> None:
    team = care_team(world)
    alert_id = raise_low(world, team.devices[0]).alert_id.hex()
    doctor = str(keyfile(tmp_path, team.doctor))
    stranger = str(keyfile(tmp_path, world.provider()))
    gw = ("--gateway", edge.url)
    one_line(invoke("alerts", "ack", "00" * 16, "--key", doctor, *gw), "unknown_alert",
             exit_code=1)  # fmt: skip
    one_line(invoke("alerts", "ack", alert_id, "--key", stranger, *gw), "not_a_recipient",
             exit_code=1)  # fmt: skip
    result = invoke("alerts", "ack", alert_id.upper(), "--key", doctor, *gw)
    assert result.exit_code == 0, result.output
    assert f"acknowledged alert {alert_id}" in result.output
    assert world.running.alerts.escalator.state(alert_id).acknowledged_by == team.doctor.address
    result = invoke("alerts", "ack", alert_id, "--key", doctor, *gw)
    assert (result.exit_code, "already acknowledged" in result.output) == (0, True)


def test_snooze_takes_the_gateways_choices(world: World, edge: Edge, tmp_path: Path) -> None:
    team = care_team(world)
    patient = team.patients[0].address
    doctor = str(keyfile(tmp_path, team.doctor))
    stranger = str(keyfile(tmp_path, world.provider()))
    base = ("alerts", "snooze", "--patient", patient, "--vital", "spo2", "--gateway", edge.url)
    choices = world.running.alerts.snooze_choices(patient, None)
    spo2 = world.running.alerts.snooze_choices(patient, Vital.SPO2)
    offered = ", ".join(f"{c / 60:g}" for c in spo2)
    line = one_line(invoke(*base, "--key", doctor, "--minutes", "7"), "invalid_snooze",
                    "--minutes", f"choose {offered}")  # fmt: skip
    assert "7 minutes" in line
    one_line(invoke(*base, "--key", doctor, "--minutes", "10080"), "invalid_snooze", "choose")
    minutes = offered.split(", ")[0]
    one_line(invoke(*base, "--key", stranger, "--minutes", minutes), "not_a_recipient",
             exit_code=1)  # fmt: skip
    result = invoke(*base, "--key", doctor, "--minutes", minutes)
    assert result.exit_code == 0, result.output
    assert f"snoozed spo2 of {patient} for {minutes} min" in result.output
    # The patient snoozes their own alerts, every vital: --patient defaults to the key's own.
    own = str(keyfile(tmp_path, team.patients[0]))
    every = f"{choices[0] / 60:g}"
    result = invoke("alerts", "snooze", "--key", own, "--vital", "all", "--minutes", every,
                    "--gateway", edge.url)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"snoozed every vital of {patient}" in result.output


def test_list_shows_what_was_delivered_and_confirms_receipt(
    world: World, edge: Edge, tmp_path: Path
) -> None:
    team = care_team(world)
    alert_id = raise_low(world, team.devices[0]).alert_id.hex()
    doctor = str(keyfile(tmp_path, team.doctor))
    result = invoke("alerts", "list", "--key", doctor, "--gateway", edge.url, "--json",
                    "--no-receipt")  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (record["alert_id"], record["body"]["vital"], record["body"]["value"]) == (
        alert_id, "spo2", 85.0
    )  # fmt: skip
    assert record["priority"] in ("high", "medium", "low")
    assert world.running.alerts.pending_for(team.doctor.address)  # --no-receipt: still due
    result = invoke("alerts", "list", "--key", doctor, "--gateway", edge.url, "--tz", "UTC")
    assert result.exit_code == 0, result.output
    assert "blood oxygen (SpO2) 85 %, below" in result.stdout
    assert alert_id in result.stdout
    assert world.running.alerts.pending_for(team.doctor.address) == []  # receipted


def test_watch_reconnects_across_a_gateway_restart_and_shows_each_alert_once(
    world: World, edge: Edge, tmp_path: Path
) -> None:
    team = care_team(world, patients=3)
    doctor = str(keyfile(tmp_path, team.doctor))
    outcome: dict[str, Result] = {}

    def watch() -> None:
        outcome["watch"] = invoke("alerts", "watch", "--key", doctor, "--gateway", edge.url,
                                  "--count", "3", "--timeout", "120", "--json")  # fmt: skip

    hub = world.running.hub
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_for(lambda: hub.subscribers(team.doctor.address) == 1 or None)
        first = raise_low(world, team.devices[0]).alert_id.hex()
        wait_for(lambda: world.running.alerts.pending_for(team.doctor.address) == [] or None)
        edge.stop()  # a restart of the gateway's HTTP edge: watch is cut off
        missed = [raise_low(world, d).alert_id.hex() for d in team.devices[1:]]
        edge.start()
    finally:
        watcher.join(timeout=120)
    assert not watcher.is_alive()
    result = outcome["watch"]
    assert result.exit_code == 0, result.output
    records: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["alert_id"] for r in records] == [first, *missed]  # each once, in order
    assert "reconnected" in result.stderr
