"""``vitalchain verify-receipts`` (issue 17, item 3): exit codes as ``vitalchain verify``.

0 every check passed, 1 a check failed and is named (a forged receipt, a receipted reading
the gateway dropped), 2 bad arguments (an unreadable or malformed receipts file, one line and
its code, before the chain is contacted), 3 could not verify (the chain unreachable).  The
checks run in-process on a real node and the embedded chain (``run_verify_receipts``, which
the command calls once it has read its arguments)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from tests.support.cli import NOWHERE, invoke, one_line, text
from tests.support.node import World, make_world
from tests.support.plugin import deploy
from tests.support.portal import seal_all
from vitalchain.cli.verify import run_verify_receipts
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.node import served
from vitalchain.sdk.receipts import read_receipts, write_receipts
from vitalchain.vitals import Vital
from vitalchain.wire.receipt import RECEIPT_CONTEXT, Receipt
from vitalchain.wire.telemetry import Ack


def sign(receipt: Receipt, key: PrivateKey) -> Receipt:
    return receipt.signed(key.sign(receipt.signed_part(), RECEIPT_CONTEXT).to_rsv())


def offline_receipt() -> Receipt:
    """A well-formed receipt of nobody's (for the argument checks: no chain is asked)."""
    key = PrivateKey.generate()
    unsigned = Receipt.single(7, PrivateKey.generate().address, bytes(32), 0, 2, 1_700_000_000_000,
                       key.address)  # fmt: skip
    return sign(unsigned, key)


@pytest.fixture
def receipts_file(tmp_path: Path) -> Path:
    path = tmp_path / "receipts.json"
    write_receipts(path, [offline_receipt()])
    return path


@pytest.fixture
def deployment(world: World, tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    path.write_text(world.ledger.deployment.to_json())
    return path


def run(
    world: World, receipts: list[Receipt], patient: PrivateKey | None = None
) -> tuple[int, str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    if patient is None:
        _, code = run_verify_receipts(world.ledger, receipts, console=console)
    else:
        _, code = run_verify_receipts(
            world.ledger, receipts, http=world.client, key=patient, patient=patient.address,
            group_id=world.group_id, console=console,
        )  # fmt: skip
    return code, " ".join(buffer.getvalue().replace("│", " ").split())


# -- 2: bad arguments, one line, nothing contacted ------------------------------------------------


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (None, "unreadable_file", "cannot read receipts from"),
        ("not json", "bad_receipts", "not JSON"),
        ('{"v": 9, "receipts": []}', "unknown_version", "unknown version 9"),
        ('{"v": 1, "receipts": ["00"]}', "bad_receipts", "receipt 0"),
    ],
)
def test_a_bad_receipts_file_is_refused(
    tmp_path: Path, content: str | None, code: str, words: str
) -> None:
    path = tmp_path / "given.json"
    if content is not None:
        path.write_text(content)
    result = invoke("verify-receipts", "--receipts", str(path), "--rpc-url", NOWHERE)
    one_line(result, code, "--receipts", words, str(path))


def test_patient_and_key_go_together(receipts_file: Path, tmp_path: Path) -> None:
    base = ("verify-receipts", "--receipts", str(receipts_file), "--rpc-url", NOWHERE)
    one_line(invoke(*base, "--patient", PrivateKey.generate().address), "missing_argument",
             "--patient", "--key")  # fmt: skip
    key = tmp_path / "me.key"
    key.write_text(PrivateKey.generate().secret.hex())
    one_line(invoke(*base, "--key", str(key)), "missing_argument", "--patient")
    one_line(invoke(*base, "--gateway", "nope"), "invalid_url", "--gateway")
    one_line(invoke(*base, "--deployment", str(tmp_path / "none.json")), "unreadable_file",
             "--deployment")  # fmt: skip


def test_an_unreachable_chain_exits_3(receipts_file: Path, deployment: Path) -> None:
    result = invoke("verify-receipts", "--receipts", str(receipts_file), "--rpc-url", NOWHERE,
                    "--deployment", str(deployment))  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "Traceback" not in text(result)


def drop(world: World, receipt: Receipt | bytes) -> None:
    """Tampering: the gateway deletes a message it receipted from its journal, before sealing
    (a v1 receipt's one message, or the message of this hash)."""
    message_id = receipt if isinstance(receipt, bytes) else receipt.only.message_hash
    db = sqlite3.connect(getattr(world.running.gateway.store.journal, "path"))  # noqa: B009
    try:
        db.execute("PRAGMA foreign_keys=ON")
        gone = db.execute("DELETE FROM messages WHERE message_id = ?", (message_id,))
        assert gone.rowcount == 1
        db.commit()
    finally:
        db.close()


def kept(device: DeviceClient) -> list[Receipt]:
    assert device.receipts is not None
    return device.receipts.receipts


# -- 0 and 1, on a real node ------------------------------------------------------------------


def test_verified_receipts_exit_0_and_a_dropped_reading_exits_1(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    for value in (95, 96, 97):
        device.send(device.prepare([(Vital.SPO2, value)]))
    assert device.receipts is not None
    receipts = device.receipts.receipts
    seal_all(world, patient)
    code, out = run(world, receipts, patient)
    assert code == 0, out
    assert "verified: no check failed (3 receipt(s), 3 verified, 3 sealed, 3 anchored" in out

    # a fourth message, acknowledged, then deleted by the gateway before it sealed a fifth
    device.send(device.prepare([(Vital.SPO2, 98)]))  # seq 3
    dropped = device.receipts.receipts[-1]
    drop(world, dropped)
    device.send(device.prepare([(Vital.SPO2, 99)]))  # seq 4, sealed
    seal_all(world, patient)
    code, out = run(world, device.receipts.receipts, patient)
    assert code == 1, out
    assert f"FAILED: receipt_not_sealed (block -): device {device.address}: seq 3" in out
    assert "1 not sealed" in out


def test_a_cumulative_receipt_from_a_file_names_the_dropped_message(
    world: World, tmp_path: Path
) -> None:
    """A collected-receipts file holding a v2 receipt (as an MQTT device keeps them): it
    verifies (0), and once the gateway dropped one of the messages it covers, exits 1
    naming that message's device and seq."""
    patient = world.patient()
    device = world.device(patient)
    for value in (95, 96, 97, 98):
        device.send(device.prepare([(Vital.SPO2, value)]))  # seqs 0..3
    singles = kept(device)
    acks = [Ack(1, r.only.last_seq, r.only.message_hash, first_seq=r.only.first_seq)
            for r in singles[:3]]  # fmt: skip
    raw = world.running.gateway.ingest_core.receipt_for(world.group_id, device.address, acks)
    assert raw is not None
    path = tmp_path / "receipts.json"
    write_receipts(path, [Receipt.parse(raw), singles[3]])
    drop(world, singles[1].only.message_hash)  # seq 1, covered by the cumulative receipt
    seal_all(world, patient)
    code, out = run(world, read_receipts(path), patient)
    assert code == 1, out
    assert f"FAILED: receipt_not_sealed (block -): device {device.address}: seq 1" in out
    assert "1 not sealed" in out


def test_a_forged_receipt_exits_1_without_a_key(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 95)]))
    assert device.receipts is not None
    good = device.receipts.receipts[0]
    assert run(world, [good])[0] == 0
    forger = PrivateKey.generate()
    code, out = run(world, [good, sign(replace(good, gateway=forger.address), forger)])
    assert code == 1
    assert "FAILED: receipt_signature" in out
    assert "not the group's master" in out


# -- the command itself, end to end on anvil ----------------------------------------------------


@pytest.fixture
def anvil_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    chain = deploy(request, "anvil")
    try:
        yield from make_world(chain, tmp_path / "node")
    finally:
        chain[0].backend.close()


def test_the_command_on_anvil(anvil_world: World, request: pytest.FixtureRequest,
                              tmp_path: Path) -> None:  # fmt: skip
    """``vitalchain verify-receipts`` over real HTTP and JSON-RPC: a device's receipts file
    verifies (0); a patient's collection where the gateway dropped one exits 1, naming it."""
    world = anvil_world
    patient = world.patient()
    key = tmp_path / "patient.key"
    key.write_text(patient.secret.hex())
    key.chmod(0o600)
    deployment = tmp_path / "deployment.json"
    deployment.write_text(world.ledger.deployment.to_json())
    rpc = ("--rpc-url", request.getfixturevalue("anvil_url"), "--deployment", str(deployment))
    cuff, oximeter = world.device(patient), world.device(patient)
    cuff.send(cuff.prepare([(Vital.SYSTOLIC_BP, 120), (Vital.DIASTOLIC_BP, 80)]))
    for value in (95, 96):
        oximeter.send(oximeter.prepare([(Vital.SPO2, value)]))
    drop(world, kept(oximeter)[0])
    seal_all(world, patient)
    write_receipts(tmp_path / "cuff.json", kept(cuff))
    write_receipts(tmp_path / "oximeter.json", kept(oximeter))
    with served(world.running.app()) as url:
        who = ("--patient", patient.address, "--key", str(key), "--gateway", url)
        ok = invoke("verify-receipts", "--receipts", str(tmp_path / "cuff.json"), *who, *rpc)
        assert ok.exit_code == 0, ok.output
        assert "verified: no check failed (1 receipt(s), 1 verified, 1 sealed, 1 anchored" in (
            text(ok)
        )
        both = invoke("verify-receipts", "--receipts", str(tmp_path / "cuff.json"),
                      "--receipts", str(tmp_path / "oximeter.json"), *who, *rpc)  # fmt: skip
        signatures_only = invoke(
            "verify-receipts", "--receipts", str(tmp_path / "oximeter.json"), *rpc
        )
    assert both.exit_code == 1, both.output
    out = text(both)
    assert f"FAILED: receipt_not_sealed (block -): device {oximeter.address}: seq 0" in out
    assert "3 receipt(s), 3 verified, 2 sealed, 2 anchored, 1 not sealed" in out
    assert signatures_only.exit_code == 0, signatures_only.output
