"""``verify`` trusts only the chain, and names the check that catches each kind of tampering."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.node import World
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.block import SectionPlan, read_block, seal_block
from vitalchain.crypto.merkle import ConsistencyProof, InclusionProof
from vitalchain.ledger import Ledger
from vitalchain.ledger.ledger import history_hash
from vitalchain.sdk.source import StoreSource
from vitalchain.sdk.verify import ChainFacts, Outcome, verify_patient
from vitalchain.vitals import Vital


class Tampered(StoreSource):
    """A store that lies about exactly one thing."""

    block_override: dict[int, bytes]
    inclusion_override: bytes | None = None
    consistency_override: bytes | None = None
    hidden: set[int]

    def __init__(self, source: StoreSource) -> None:
        super().__init__(source.store)
        self.block_override, self.hidden = {}, set()

    def block_bytes(self, group_id: int, patient: str, number: int) -> bytes | None:
        if number in self.hidden:
            return None
        return self.block_override.get(number) or super().block_bytes(group_id, patient, number)

    def patient_numbers(self, group_id: int, patient: str) -> list[int]:
        return [n for n in super().patient_numbers(group_id, patient) if n not in self.hidden]

    def inclusion_proof(self, group_id: int, leaf_index: int, tree_size: int) -> InclusionProof:
        if self.inclusion_override is not None:
            return InclusionProof.from_bytes(self.inclusion_override)
        return super().inclusion_proof(group_id, leaf_index, tree_size)

    def consistency_proof(self, group_id: int, size1: int, size2: int) -> ConsistencyProof:
        if self.consistency_override is not None:
            return ConsistencyProof.from_bytes(self.consistency_override)
        return super().consistency_proof(group_id, size1, size2)


def anchored_patient(world: World, blocks: int = 3) -> tuple[PrivateKey, StoreSource]:
    """A patient with ``blocks`` blocks, anchored twice (so there is a consistency to check)."""
    patient = world.patient()
    device = world.device(patient)
    for i in range(blocks):
        device.send(device.prepare([(Vital.SPO2, 97)] * 4))
        world.running.sealer.seal_due()
        if i in (0, blocks - 1):
            assert world.running.sealer.anchor() is not None
    return patient, StoreSource(world.running.gateway.store)


def failed(report: object) -> set[str]:
    return {c.name for c in report.failures}  # type: ignore[attr-defined]


def test_untampered_blocks_verify(world: World) -> None:
    patient, source = anchored_patient(world)
    report = verify_patient(source, world.ledger, world.group_id, patient.address, reader=patient)
    assert report.ok, report.failures
    outcomes = Counter((c.name, c.outcome) for c in report.checks)
    assert outcomes[("inclusion", Outcome.OK)] == 3
    assert outcomes[("payload", Outcome.OK)] == 3
    assert outcomes[("block_signature", Outcome.OK)] == 3
    assert outcomes[("consistency", Outcome.OK)] == 1
    assert outcomes[("anchor_history", Outcome.OK)] == 1
    assert outcomes[("sequence", Outcome.OK)] == 2
    single = verify_patient(
        source, world.ledger, world.group_id, patient.address, number=2, reader=patient
    )
    assert single.ok
    assert {c.block for c in single.checks if c.block} == {1, 2}


def test_a_provider_verifies_through_the_store_api(world: World) -> None:
    patient, _ = anchored_patient(world)
    doctor = world.provider()
    world.consent(patient, doctor)
    client = world.reader(doctor)
    client.fetch(world.group_id, patient.address)
    report = verify_patient(
        client.source, world.ledger, world.group_id, patient.address, reader=doctor
    )
    assert report.ok, report.failures
    # sealed before the grant: no key for this provider, so the payload is skipped, not failed
    assert {c.outcome for c in report.checks if c.name == "payload"} == {Outcome.SKIPPED}


def test_unanchored_block_is_pending_not_failed(world: World) -> None:
    patient, source = anchored_patient(world)
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 96)] * 4))
    world.running.sealer.seal_due()
    report = verify_patient(source, world.ledger, world.group_id, patient.address)
    assert report.ok
    assert [c.block for c in report.checks if c.outcome is Outcome.PENDING] == [4]


def test_a_missing_block_is_named(world: World) -> None:
    patient, source = anchored_patient(world)
    liar = Tampered(source)
    liar.hidden = {2}
    report = verify_patient(liar, world.ledger, world.group_id, patient.address)
    assert failed(report) == {"sequence"}
    assert "missing: [2]" in report.failures[0].detail


def test_every_bit_flip_of_a_sealed_block_is_caught(world: World) -> None:
    patient, source = anchored_patient(world, blocks=2)
    facts = ChainFacts.load(world.ledger, world.group_id)
    original = source.block_bytes(world.group_id, patient.address, 2)
    assert original is not None
    liar = Tampered(source)
    caught: Counter[str] = Counter()
    for bit in range(len(original) * 8):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        liar.block_override = {2: bytes(flipped)}
        report = verify_patient(
            liar, facts, world.group_id, patient.address, number=2, reader=patient
        )
        assert not report.ok, f"bit {bit} went unnoticed"
        caught[report.failures[0].name] += 1
    assert sum(caught.values()) == len(original) * 8
    assert set(caught) <= {"format", "block_signature", "inclusion", "payload", "sequence"}
    print(dict(caught))


def test_every_bit_flip_of_its_inclusion_proof_is_caught(world: World) -> None:
    patient, source = anchored_patient(world, blocks=3)
    facts = ChainFacts.load(world.ledger, world.group_id)
    block = read_block(source.block_bytes(world.group_id, patient.address, 1) or b"")
    size = facts.anchors[-1][0]
    proof = source.inclusion_proof(world.group_id, block.leaf_index, size).to_bytes()
    liar = Tampered(source)
    for bit in range(len(proof) * 8):
        flipped = bytearray(proof)
        flipped[bit // 8] ^= 1 << (bit % 8)
        liar.inclusion_override = bytes(flipped)  # decodable or not, verify must report it
        report = verify_patient(liar, facts, world.group_id, patient.address, number=1)
        assert "inclusion" in failed(report), f"proof bit {bit} went unnoticed"


def test_a_hidden_or_forged_anchor_event_is_caught(world: World) -> None:
    patient, source = anchored_patient(world)
    facts = ChainFacts.load(world.ledger, world.group_id)
    assert facts.history_ok
    # a lying node that drops an Anchored event, or swaps a root, cannot match anchorHistory
    dropped = [world.ledger.anchors(world.group_id)[-1]]
    assert history_hash(dropped) != world.ledger.anchor_history(world.group_id)
    forged = replace(facts, history_ok=False)
    assert "anchor_history" in failed(
        verify_patient(source, forged, world.group_id, patient.address)
    )


def test_tampered_anchored_root_and_consistency_proof_are_caught(world: World) -> None:
    patient, source = anchored_patient(world)
    facts = ChainFacts.load(world.ledger, world.group_id)
    (s1, r1), (s2, r2) = facts.anchors
    for i in range(len(r2) * 8):
        bad_root = bytearray(r2)
        bad_root[i // 8] ^= 1 << (i % 8)
        forged = replace(facts, anchors=[(s1, r1), (s2, bytes(bad_root))])
        assert {"consistency", "inclusion"} <= failed(
            verify_patient(source, forged, world.group_id, patient.address)
        )
    liar = Tampered(source)
    good = source.consistency_proof(world.group_id, s1, s2).to_bytes()
    liar.consistency_override = good[:-1] + bytes([good[-1] ^ 1])
    assert "consistency" in failed(verify_patient(liar, facts, world.group_id, patient.address))


def test_a_block_forged_by_someone_else_or_moved_is_caught(world: World) -> None:
    patient, source = anchored_patient(world, blocks=2)
    genuine = read_block(source.block_bytes(world.group_id, patient.address, 2) or b"")
    forged, _ = seal_block(
        PrivateKey.generate(), group_id=genuine.group_id, patient=genuine.patient, number=2,
        previous=genuine.previous, leaf_index=genuine.leaf_index, sealed_at_ms=genuine.sealed_at_ms,
        sections=[SectionPlan(Vital.SPO2.bit, 0, [], [patient.public_key])],
    )  # fmt: skip
    liar = Tampered(source)
    liar.block_override = {2: forged.encode()}
    assert {"block_signature", "inclusion"} <= failed(
        verify_patient(liar, world.ledger, world.group_id, patient.address, number=2)
    )
    other, other_source = anchored_patient(world, blocks=1)
    liar.block_override = {2: other_source.block_bytes(world.group_id, other.address, 1) or b""}
    assert failed(
        verify_patient(liar, world.ledger, world.group_id, patient.address, number=2)
    ) == {"format"}


@pytest.mark.parametrize("cut", [1, 10, 100])
def test_truncated_blocks_are_format_failures(world: World, cut: int) -> None:
    patient, source = anchored_patient(world, blocks=1)
    data = source.block_bytes(world.group_id, patient.address, 1) or b""
    liar = Tampered(source)
    liar.block_override = {1: data[:-cut]}
    assert failed(verify_patient(liar, world.ledger, world.group_id, patient.address)) == {"format"}


def test_verify_command_exit_codes_and_a_tampered_file_on_disk(world: World) -> None:
    import io

    from rich.console import Console

    from vitalchain.cli.verify_report import EXIT_FAILED, EXIT_OK, EXIT_UNABLE, run_verify
    from vitalchain.store import SqliteStore

    patient, _ = anchored_patient(world, blocks=2)
    out = io.StringIO()
    console = Console(file=out, width=200)
    _, code = run_verify(
        world.ledger, world.client, patient, world.group_id, patient.address, console=console
    )
    assert code == EXIT_OK
    assert "verified" in out.getvalue()
    _, code = run_verify(
        world.ledger,
        world.client,
        PrivateKey.generate(),
        world.group_id,
        patient.address,
        console=console,
    )
    assert code == EXIT_UNABLE
    # an attacker with write access to the store's disk changes one byte of block 2
    store = world.running.gateway.store.block_store
    assert isinstance(store, SqliteStore)
    block = store.patient_block(world.group_id, patient.address, 2)
    assert block is not None
    (path,) = (store.block_dir / str(world.group_id)).glob(f"{block.leaf_index}-*.vcb")
    data = bytearray(path.read_bytes())
    data[-70] ^= 0x01  # inside the signed part, just before the signature
    path.write_bytes(bytes(data))
    out.truncate(0)
    report, code = run_verify(
        world.ledger, world.client, patient, world.group_id, patient.address, console=console
    )
    assert code == EXIT_FAILED
    assert report is not None
    assert {c.name for c in report.failures} >= {"block_signature"}
    assert "FAILED: " in out.getvalue()


def test_verify_cli_argument_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vitalchain.cli import app

    runner = CliRunner()
    bad_key = tmp_path / "key"
    bad_key.write_text("not hex")
    args = ["verify", "--patient", "0x" + "11" * 20, "--group-id", "1"]
    assert runner.invoke(app, [*args, "--key", str(bad_key)]).exit_code == 2
    assert runner.invoke(app, [*args, "--key", str(tmp_path / "missing")]).exit_code == 2
    good_key = tmp_path / "good"
    good_key.write_text(PrivateKey.generate().secret.hex())
    result = runner.invoke(
        app, ["verify", "--patient", "nope", "--group-id", "1", "--key", str(good_key)]
    )
    assert result.exit_code == 2
    result = runner.invoke(
        app,
        [
            *args,
            "--key",
            str(good_key),
            "--deployment",
            str(tmp_path / "none.json"),
            "--rpc-url",
            "http://127.0.0.1:9",
        ],
    )
    assert result.exit_code == 2  # a missing deployment file is a bad argument
    deployment = tmp_path / "deployment.json"
    Ledger.embedded().deployment.save(deployment)
    result = runner.invoke(
        app,
        [*args, "--key", str(good_key), "--deployment", str(deployment), "--rpc-url",
         "http://127.0.0.1:9"],
    )  # fmt: skip
    assert result.exit_code == 3  # a node that cannot be reached: nothing could be checked
