"""``vitalchain verify``: check a patient's blocks without trusting the gateway or the store.

Blocks, proofs and key rings come from a :class:`BlockSource` (the store's API, or a local
store); only the chain is trusted.  Every check of docs/spec/block.md is run and reported by
name, so a tampered block, proof or root says exactly what failed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Protocol, TypeVar

from vitalchain.crypto.block import open_sections, read_block, verify_block_signature
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, message_digest
from vitalchain.crypto.merkle import (
    ConsistencyProof,
    InclusionProof,
    verify_consistency,
    verify_inclusion,
)
from vitalchain.errors import DecodeError, DecryptionError, InvalidProof, InvalidSignature
from vitalchain.ledger import Ledger
from vitalchain.ledger.ledger import history_hash
from vitalchain.wire.block import Block, BlockEntry, KeyEntry
from vitalchain.wire.telemetry import READING_CONTEXT, Payload

__all__ = [
    "BlockSource",
    "ChainFacts",
    "Check",
    "DeviceMessage",
    "Opened",
    "Outcome",
    "Report",
    "read_messages",
    "verify_patient",
]

T = TypeVar("T")
_Key = tuple[bytes, str, tuple[KeyEntry, ...]]  # block bytes, reader, key ring


class BlockSource(Protocol):
    """Where blocks and proofs come from; nothing it says is taken on trust."""

    def block_bytes(self, group_id: int, patient: str, number: int) -> bytes | None: ...
    def patient_numbers(self, group_id: int, patient: str) -> list[int]: ...
    def inclusion_proof(self, group_id: int, leaf_index: int, tree_size: int) -> InclusionProof: ...
    def consistency_proof(self, group_id: int, size1: int, size2: int) -> ConsistencyProof: ...
    def stanzas(self, group_id: int, leaf_index: int) -> Sequence[KeyEntry]: ...


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One message of an opened block: its device signature checked, its payload parsed."""

    entry: BlockEntry
    payload: Payload


def read_messages(entries: Sequence[BlockEntry]) -> list[DeviceMessage]:
    """Recover each message's signer and parse its payload, once: InvalidSignature unless the
    device named in the block signed it and the payload names that device too; DecodeError
    for a payload that is not telemetry.md's."""
    messages = []
    for entry in entries:
        digest = message_digest(entry.payload, READING_CONTEXT)
        signer = PublicKey.recover(Signature.from_rsv(entry.signature), digest).address
        payload = Payload.parse(entry.payload, max_readings=None)
        if signer != entry.device or payload.device != signer:
            raise InvalidSignature(f"a message is not signed by its device {entry.device}")
        messages.append(DeviceMessage(entry, payload))
    return messages


class Opened:
    """Blocks parsed once and payloads opened once, shared by a provider's fetch and verify.

    Keyed on the exact block bytes (and, for a payload, the reader and the key ring used), so
    what is shared is only ever the result of the same work on the same input.
    """

    def __init__(self) -> None:
        self._blocks: dict[bytes, Block] = {}
        self._sections: dict[_Key, dict[int, list[BlockEntry]]] = {}
        self._messages: dict[_Key, dict[int, list[DeviceMessage]]] = {}

    def block(self, data: bytes) -> Block:
        """``read_block(data)``, parsed at most once."""
        found = self._blocks.get(data)
        if found is None:
            found = self._blocks[data] = read_block(data)
        return found

    def sections(
        self, block: Block, ring: Sequence[KeyEntry], reader: PrivateKey
    ) -> dict[int, list[BlockEntry]]:
        """``open_sections``: every section ``reader`` opens, decrypted at most once."""
        key = (block.encode(), reader.address, tuple(ring))
        found = self._sections.get(key)
        if found is None:
            found = self._sections[key] = open_sections(block, ring, reader)
        return found

    def entries(
        self, block: Block, ring: Sequence[KeyEntry], reader: PrivateKey
    ) -> list[BlockEntry]:
        """The messages of every section ``reader`` opens, in section order."""
        return [e for _, part in sorted(self.sections(block, ring, reader).items()) for e in part]

    def section_messages(
        self, block: Block, ring: Sequence[KeyEntry], reader: PrivateKey
    ) -> dict[int, list[DeviceMessage]]:
        """Each opened section's messages, every device signature checked at most once."""
        key = (block.encode(), reader.address, tuple(ring))
        found = self._messages.get(key)
        if found is None:
            opened = self.sections(block, ring, reader)
            found = {i: read_messages(part) for i, part in opened.items()}
            self._messages[key] = found
        return found

    def messages(
        self, block: Block, ring: Sequence[KeyEntry], reader: PrivateKey
    ) -> list[DeviceMessage]:
        """The messages of every section ``reader`` opens, in section order."""
        opened = self.section_messages(block, ring, reader)
        return [m for _, part in sorted(opened.items()) for m in part]


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    PENDING = "pending"  # e.g. sealed but not anchored yet: not evidence of tampering
    SKIPPED = "skipped"  # e.g. no key to open the payload


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    outcome: Outcome
    detail: str
    block: int | None = None  # the patient's block number, when the check is about one


@dataclass
class Report:
    group_id: int
    patient: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.outcome is not Outcome.FAILED for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.outcome is Outcome.FAILED]

    def add(self, name: str, outcome: Outcome, detail: str, block: int | None = None) -> None:
        self.checks.append(Check(name, outcome, detail, block))


@dataclass
class ChainFacts:
    """What the verifier trusts, read from the chain once per run."""

    group_id: int
    anchors: list[tuple[int, bytes]]  # (tree size, root), in order
    masters: set[str]  # every address that has been the group's master
    ledger: Ledger
    _device_groups: dict[str, int] = field(default_factory=dict)

    history_ok: bool = True  # the events replay to the contract's anchorHistory

    @classmethod
    def load(cls, ledger: Ledger, group_id: int) -> ChainFacts:
        created = ledger.events.query("GroupCreated", groupId=group_id)
        rotated = ledger.events.query("MasterRotated", groupId=group_id)
        anchors = ledger.anchors(group_id)
        return cls(
            group_id,
            [(a.tree_size, a.root) for a in anchors],
            {e.args["master"] for e in created} | {e.args["newMaster"] for e in rotated},
            ledger,
            history_ok=history_hash(anchors) == ledger.anchor_history(group_id),
        )

    def device_group(self, device: str) -> int:
        if device not in self._device_groups:
            self._device_groups[device] = self.ledger.device(device).group_id
        return self._device_groups[device]


def _ask(call: Callable[[], T]) -> T:
    """Call the untrusted source; anything it throws becomes an InvalidProof finding."""
    try:
        return call()
    except (InvalidProof, DecodeError):
        raise
    except Exception as exc:
        raise InvalidProof(f"the store could not give a proof: {exc}") from None


def verify_patient(
    source: BlockSource,
    chain: Ledger | ChainFacts,
    group_id: int,
    patient: str,
    *,
    number: int | None = None,
    reader: PrivateKey | None = None,
    opened: Opened | None = None,
) -> Report:
    """Verify all of a patient's blocks (or block ``number``) against the chain.

    ``opened`` shares the blocks a provider already fetched and decrypted
    (``ProviderClient.opened``), so none is parsed or decrypted twice."""
    opened = opened if opened is not None else Opened()
    facts = chain if isinstance(chain, ChainFacts) else ChainFacts.load(chain, group_id)
    report = Report(group_id, patient)
    anchors = facts.anchors
    report.add(
        "anchor_history",
        Outcome.OK if facts.history_ok else Outcome.FAILED,
        f"{len(anchors)} Anchored event(s) replay to the contract's history hash"
        if facts.history_ok
        else "the Anchored events do not replay to anchorHistory: anchors missing or forged",
    )
    # consistency between consecutive anchored roots
    if len(anchors) < 2:
        report.add(
            "consistency", Outcome.OK, f"{len(anchors)} anchored root(s); nothing to compare"
        )
    for (s1, r1), (s2, r2) in itertools.pairwise(anchors):
        try:
            proof = _ask(partial(source.consistency_proof, group_id, s1, s2))
            if (proof.size1, proof.size2) != (s1, s2):
                raise InvalidProof("proof is for other tree sizes")
            verify_consistency(proof, r1, r2)
            report.add("consistency", Outcome.OK, f"root at {s1} is a prefix of root at {s2}")
        except (InvalidProof, DecodeError) as exc:
            report.add("consistency", Outcome.FAILED, f"anchored roots {s1} → {s2}: {exc}")
    numbers = source.patient_numbers(group_id, patient)
    if number is not None:
        if number not in numbers:
            report.add("sequence", Outcome.FAILED, f"block {number} does not exist", number)
            return report
        wanted = [n for n in numbers if n in (number - 1, number)]
    else:
        wanted = numbers
        missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
        if missing:
            report.add("sequence", Outcome.FAILED, f"block numbers missing: {missing}")
    previous: Block | None = None
    for n in wanted:
        block = _check_block(source, facts, report, opened, group_id, patient, n, reader)
        if block is not None and previous is not None and previous.number == n - 1:
            linked = block.previous == previous.hash
            report.add(
                "sequence",
                Outcome.OK if linked else Outcome.FAILED,
                "previous-block hash links"
                if linked
                else f"block {n} does not link to block {n - 1}",
                n,
            )
        if block is not None and n == 1 and block.previous != bytes(32):
            report.add("sequence", Outcome.FAILED, "block 1 claims a previous block", n)
        previous = block
    return report


def _check_block(
    source: BlockSource,
    facts: ChainFacts,
    report: Report,
    opened: Opened,
    group_id: int,
    patient: str,
    n: int,
    reader: PrivateKey | None,
) -> Block | None:
    data = source.block_bytes(group_id, patient, n)
    if data is None:
        report.add("sequence", Outcome.FAILED, "the store does not return this block", n)
        return None
    try:
        block = opened.block(data)
    except DecodeError as exc:
        report.add("format", Outcome.FAILED, str(exc), n)
        return None
    if (block.group_id, block.patient, block.number) != (group_id, patient, n):
        report.add("format", Outcome.FAILED, "block names another group, patient or number", n)
        return None
    report.add("format", Outcome.OK, f"{len(data)} bytes, v{block.version}", n)
    try:
        verify_block_signature(block)
        if block.gateway not in facts.masters:
            raise InvalidSignature(f"signer {block.gateway} was never this group's master")
        report.add("block_signature", Outcome.OK, f"signed by master {block.gateway}", n)
    except InvalidSignature as exc:
        report.add("block_signature", Outcome.FAILED, str(exc), n)
    covering = [(size, root) for size, root in facts.anchors if size > block.leaf_index]
    if not covering:
        report.add("inclusion", Outcome.PENDING, "sealed, not anchored yet", n)
    else:
        size, root = covering[-1]
        try:
            proof = _ask(partial(source.inclusion_proof, group_id, block.leaf_index, size))
            if (proof.leaf_index, proof.tree_size) != (block.leaf_index, size):
                raise InvalidProof("proof is for another leaf or tree size")
            verify_inclusion(block.leaf, proof, root)
            report.add(
                "inclusion",
                Outcome.OK,
                f"leaf {block.leaf_index} in anchored root of size {size}",
                n,
            )
        except (InvalidProof, DecodeError) as exc:
            report.add("inclusion", Outcome.FAILED, str(exc), n)
    if reader is None:
        report.add("payload", Outcome.SKIPPED, "no key given to open the payload", n)
    else:
        _check_payload(source, facts, report, opened, block, reader)
    return block


def _check_payload(
    source: BlockSource,
    facts: ChainFacts,
    report: Report,
    opened: Opened,
    block: Block,
    reader: PrivateKey,
) -> None:
    """Open every section the reader holds a key for, and check each against its signed
    head: completeness (the store withheld none of them, and each holds the readings and
    vitals the head says) and every device signature."""
    n = block.number
    try:
        ring = source.stanzas(block.group_id, block.leaf_index)
    except Exception as exc:  # the source is untrusted: its failures are findings, not crashes
        report.add("payload", Outcome.FAILED, f"the store cannot give a key ring: {exc}", n)
        return
    me = reader.public_key.address_bytes
    mine = next((e for e in ring if e.recipient == me), None)
    withheld = set(block.withheld())
    if mine is not None and withheld & set(mine.sections):
        held = sorted(withheld & set(mine.sections))
        report.add(
            "payload", Outcome.FAILED, f"the store withheld section(s) {held} this key opens", n
        )
        return
    try:
        opened.sections(block, ring, reader)
    except (DecryptionError, DecodeError) as exc:
        outcome = Outcome.SKIPPED if isinstance(exc, DecryptionError) else Outcome.FAILED
        report.add("payload", outcome, f"cannot open with this key: {exc}", n)
        return
    try:
        sections = opened.section_messages(block, ring, reader)
        count = 0
        for index, messages in sections.items():
            head = block.sections[index]
            readings, vitals = 0, 0
            for message in messages:
                signer = message.entry.device
                group = message.payload.group
                if group != block.group_id or facts.device_group(signer) != block.group_id:
                    raise InvalidSignature(
                        f"device {signer} is not in group {block.group_id} on chain"
                    )
                readings += len(message.payload.readings)
                for reading in message.payload.readings:
                    vitals |= reading.vital.bit
            if (readings, vitals) != (head.readings, head.scope):
                raise InvalidSignature(
                    "the header's reading count or vitals do not match the payload"
                )
            count += len(messages)
        detail = f"{count} device signature(s) verify"
        others = len(block.sections) - len(sections)
        if others:
            detail += f"; {others} section(s) outside this key's consent not opened"
        report.add("payload", Outcome.OK, detail, n)
    except (InvalidSignature, DecodeError) as exc:
        report.add("payload", Outcome.FAILED, str(exc) or type(exc).__name__, n)
