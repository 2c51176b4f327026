"""``vitalchain verify-receipts``: hold the gateway to what it acknowledged (issue 17).

A device keeps the gateway's signed receipts (docs/spec/receipt.md).  Later, the patient, or
a provider the patient consented to, checks them against the chain alone:

1. every receipt is signed by an address that was the group's master at the receipt's time
   (:class:`~vitalchain.ledger.masters.GroupMasters`, the rule the device applied): finding
   ``receipt_signature``;
2. with a key that opens the patient's blocks, every receipted reading is in a sealed block
   whose root is anchored (``receipt_sealed``; the block's inclusion is ``verify_patient``'s
   check when a block source is given).  A receipted reading in no block is
   ``receipt_not_sealed``: evidence that the gateway dropped data it acknowledged.

The result is ``sdk.verify``'s :class:`Report`, so it prints and exits like
``vitalchain verify``.  A receipt is v1 (one message) or v2 (a cumulative MQTT receipt of
1..64 messages of one device, receipt.md): the signature is checked once per receipt, and each
message it covers is then matched by device and seqs exactly as a v1 receipt's one message.
Receipts travel in a small versioned JSON file
(docs/spec/receipt.md, "Collected receipts (file)"): :func:`write_receipts`,
:func:`read_receipts`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import DecodeError, DecryptionError, InvalidSignature, VitalchainError
from vitalchain.ledger import Ledger
from vitalchain.ledger.masters import GroupMasters, receipt_signer
from vitalchain.sdk.provider import FetchedBlock
from vitalchain.sdk.verify import BlockSource, ChainFacts, Outcome, Report, verify_patient
from vitalchain.store.files import write_private
from vitalchain.wire.receipt import Covered, Receipt

__all__ = [
    "FILE_VERSION",
    "MAX_FILE_BYTES",
    "SEAL_GRACE_S",
    "ReceiptReport",
    "check_receipts",
    "read_receipts",
    "receipts_json",
    "write_receipts",
]

FILE_VERSION = 1
# A device keeps at most RECEIPTS_KEPT (4096) receipts, ~1.4 MB as hex; a patient's collected
# file of many devices stays far below this, and a larger file is refused before parsing.
MAX_FILE_BYTES = 64 * 1024 * 1024
# A receipted message in no block yet is only evidence once the gateway has had time to seal
# it: its sealing policy seals a message within max_age_s (60 s by default).  An hour covers
# any policy a deployment runs, and a verifier may pass its own.
SEAL_GRACE_S = 3600.0


def _bad(why: str, code: str = "bad_receipts") -> DecodeError:
    return DecodeError(f"receipts file: {why}", code=code)


# -- the file -------------------------------------------------------------------------------------


def receipts_json(receipts: Iterable[Receipt]) -> str:
    """The collected-receipts file's text: ``{"v": 1, "receipts": [hex, ...]}``, v1 and v2
    receipts alike (the file's format did not change with v2: each entry is hex)."""
    return json.dumps({"v": FILE_VERSION, "receipts": [r.hex() for r in receipts]}) + "\n"


def write_receipts(path: Path, receipts: Iterable[Receipt]) -> None:
    """Write ``receipts`` to ``path`` atomically, 0600: receipts name the device and when it
    sent, which is the patient's to share."""
    write_private(path, receipts_json(receipts).encode())


def parse_receipts(text: str | bytes) -> list[Receipt]:
    """The receipts of a collected-receipts file; ``bad_receipts`` (or ``unknown_version``)
    naming what is wrong, for anything but the spec's format."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise _bad("not JSON") from None
    if not isinstance(data, dict) or "v" not in data:
        raise _bad('expected an object {"v": 1, "receipts": [...]}')
    if data["v"] != FILE_VERSION or isinstance(data["v"], bool):
        raise _bad(f"unknown version {data['v']!r}", code="unknown_version")
    items = data.get("receipts")
    if not isinstance(items, list):
        raise _bad('"receipts" is a list of hex receipts')
    receipts = []
    for index, item in enumerate(items):
        try:
            receipts.append(Receipt.from_hex(item))
        except DecodeError as exc:
            raise _bad(f"receipt {index}: {exc.message}") from None
    return receipts


def read_receipts(path: Path) -> list[Receipt]:
    """The receipts in the file at ``path``: OSError as the system raises it (the caller
    names the file), ``bad_receipts`` for content that is not a collected-receipts file."""
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _bad(f"larger than {MAX_FILE_BYTES} bytes")
    return parse_receipts(data)


# -- the check ------------------------------------------------------------------------------------


@dataclass
class ReceiptReport(Report):
    """A :class:`Report` with the counts a summary shows (the demo's, the CLI's last line)."""

    collected: int = 0  # distinct receipts given
    verified: int = 0  # signed by a master of their time
    messages: int = 0  # messages the verified receipts cover (a v2 receipt covers several)
    sealed: int = 0  # receipts every covered message of which is in the blocks
    anchored: int = 0  # ... in blocks whose root is anchored
    # (not_sealed counts messages: each is one finding, whichever receipt covered it)
    not_sealed: int = 0  # receipt_not_sealed failures: acknowledged, and dropped
    devices: set[str] = field(default_factory=set)


def _covers(receipt: Receipt) -> str:
    """What a receipt covers, as a finding names it: its seqs, and how many messages."""
    if len(receipt.entries) == 1:
        return receipt.entries[0].seqs
    first = min(e.first_seq for e in receipt.entries)
    last = max(e.last_seq for e in receipt.entries)
    return f"{len(receipt.entries)} messages, seqs {first}..{last}"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class _Sealed:
    """What the fetched blocks say: where each (device, seq) is, and what could not be read."""

    where: dict[tuple[str, int], int] = field(default_factory=dict)  # → block number
    newest: dict[str, int] = field(default_factory=dict)  # device → its highest sealed seq
    unread: list[str] = field(default_factory=list)  # why a missing reading may be unseen
    anchored: dict[int, Outcome] = field(default_factory=dict)  # block number → inclusion


def _index(
    blocks: Sequence[FetchedBlock],
    reader: PrivateKey,
    numbers: Sequence[int] | None,
    inclusion: dict[int, Outcome],
    anchored_size: int,
) -> _Sealed:
    sealed = _Sealed()
    for fetched in blocks:
        block = fetched.block
        n = block.number
        opens = set(fetched.stanza.sections) if fetched.stanza is not None else set()
        closed = (set(range(len(block.sections))) - opens) | set(block.withheld())
        if closed:
            sealed.unread.append(f"block {n}: {len(closed)} section(s) this key does not open")
        try:
            pairs = fetched.readings(reader)
        except (DecryptionError, DecodeError, InvalidSignature) as exc:
            sealed.unread.append(f"block {n}: {exc.message or type(exc).__name__}")
            continue
        for device, reading in pairs:
            sealed.where[(device, reading.seq)] = n
            sealed.newest[device] = max(sealed.newest.get(device, -1), reading.seq)
        if n in inclusion:
            sealed.anchored[n] = inclusion[n]
        else:  # no proof asked for: anchored means an anchored tree covers its leaf
            sealed.anchored[n] = Outcome.OK if block.leaf_index < anchored_size else Outcome.PENDING
    if numbers is not None:
        have = {f.block.number for f in blocks}
        unseen = sorted(set(numbers) - have)
        if unseen:
            sealed.unread.append(f"block(s) {unseen} not released to this key")
    return sealed


def check_receipts(
    receipts: Iterable[Receipt],
    ledger: Ledger,
    *,
    blocks: Sequence[FetchedBlock] | None = None,
    reader: PrivateKey | None = None,
    source: BlockSource | None = None,
    patient: str | None = None,
    verified: Report | None = None,
    grace_s: float = SEAL_GRACE_S,
    now_ms: int | None = None,
) -> ReceiptReport:
    """Check ``receipts`` against the chain and, given the patient's fetched ``blocks`` and
    the ``reader`` key that opens them, that every receipted reading was sealed and anchored.

    ``receipts`` are one patient's (a device's, or all of the patient's devices'): a receipt
    of another patient's device is in none of these blocks and would be reported missing.
    With ``source`` (``ProviderClient.source``), the blocks are verified too
    (``verify_patient``: signatures, inclusion in the anchored roots, gaps), and those checks
    are part of the report; without it, a block counts as anchored once an anchored tree
    size covers its leaf.  ``verified``: the caller's own ``verify_patient`` report of these
    blocks, whose inclusion checks are used instead of verifying them again.

    A receipted reading in no block is ``receipt_not_sealed``: FAILED once a later reading of
    the same device is sealed (the sealer takes a patient's messages in the order they were
    stored) or the receipt is older than ``grace_s``; PENDING before that."""
    unique = list(dict.fromkeys(receipts))  # one receipt twice (two collections) counts once
    groups = {r.group_id for r in unique}
    if blocks:
        groups.add(blocks[0].block.group_id)
        patient = patient or blocks[0].block.patient
    group_id = next(iter(groups)) if len(groups) == 1 else 0
    report = ReceiptReport(group_id, patient or "", collected=len(unique))
    if not unique:
        report.add("receipts", Outcome.SKIPPED, "no receipts given")
        return report
    masters = {g: GroupMasters(ledger, g, max_age_s=float("inf")) for g in sorted(groups)}
    valid = _check_signatures(report, unique, masters)
    if blocks is None or reader is None:
        report.add(
            "receipt_sealed",
            Outcome.SKIPPED,
            "no key given to open the patient's blocks: only the signatures were checked",
        )
        return report
    inclusion: dict[int, Outcome] = {}
    numbers: list[int] | None = None
    if source is not None and blocks:
        block_group, whose = blocks[0].block.group_id, blocks[0].block.patient
        facts = ChainFacts.load(ledger, block_group)
        if verified is None:
            verified = verify_patient(
                source, facts, block_group, whose, reader=reader, opened=blocks[0].opened
            )
            report.checks.extend(verified.checks)
        numbers = source.patient_numbers(block_group, whose)
        anchored_size = max((size for size, _ in facts.anchors), default=0)
    else:
        groups_of_blocks = {f.block.group_id for f in blocks}
        anchored_size = max(
            (a.tree_size for g in groups_of_blocks for a in ledger.anchors(g)), default=0
        )
    for check in verified.checks if verified is not None else ():
        if check.name == "inclusion" and check.block is not None:
            inclusion[check.block] = check.outcome
    sealed = _index(blocks, reader, numbers, inclusion, anchored_size)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    _check_sealed(report, valid, sealed, now, grace_s)
    return report


def _check_signatures(
    report: ReceiptReport, receipts: list[Receipt], masters: dict[int, GroupMasters]
) -> list[Receipt]:
    valid: list[Receipt] = []
    signers: set[str] = set()
    for receipt in receipts:
        report.devices.add(receipt.device)
        try:
            signers.add(receipt_signer(receipt, masters[receipt.group_id]))
        except VitalchainError as exc:
            report.add(
                "receipt_signature",
                Outcome.FAILED,
                f"device {receipt.device}, {_covers(receipt)}, stored {_when(receipt.stored_at_ms)}"
                f": {exc.message}",
            )
            continue
        valid.append(receipt)
    report.verified = len(valid)
    report.messages = len({(r.device, e.message_hash) for r in valid for e in r.entries})
    if valid:
        report.add(
            "receipt_signature",
            Outcome.OK,
            f"{len(valid)} receipt(s) of {len({r.device for r in valid})} device(s) signed by "
            f"a master of their time ({', '.join(sorted(signers))})",
        )
    return valid


def _check_sealed(
    report: ReceiptReport, valid: list[Receipt], sealed: _Sealed, now_ms: int, grace_s: float
) -> None:
    per_block: dict[tuple[int, Outcome], int] = {}
    unseen: list[Covered] = []
    judged: set[tuple[str, bytes]] = set()  # each covered message is reported once
    for receipt in valid:
        # A receipt counts as sealed (anchored) once every message it covers is.
        whole, anchored = True, True
        for entry in receipt.entries:
            outcome = _check_entry(report, receipt, entry, sealed, now_ms, grace_s, unseen,
                                   per_block, judged)  # fmt: skip
            whole = whole and outcome is not None
            anchored = anchored and outcome is Outcome.OK
        report.sealed += whole
        report.anchored += anchored
    for (number, outcome), count in sorted(per_block.items()):
        detail = {
            Outcome.OK: "sealed, its root anchored",
            Outcome.PENDING: "sealed, not anchored yet",
            Outcome.FAILED: "sealed, but its inclusion in the anchored log fails",
        }.get(outcome, "sealed")
        report.add(
            "receipt_sealed",
            outcome,
            f"{count} receipted message(s) in this block: {detail}",
            number,
        )
    if unseen:
        report.add(
            "receipt_sealed",
            Outcome.SKIPPED,
            f"{len(unseen)} receipted message(s) not found in what this key reads "
            f"({'; '.join(sealed.unread)})",
        )


def _check_entry(
    report: ReceiptReport,
    receipt: Receipt,
    entry: Covered,
    sealed: _Sealed,
    now_ms: int,
    grace_s: float,
    unseen: list[Covered],
    per_block: dict[tuple[int, Outcome], int],
    judged: set[tuple[str, bytes]],
) -> Outcome | None:
    """One receipted message (a v1 receipt's, or one entry of a v2 one), matched by device
    and seqs: its block's anchoring outcome if sealed, else None, with the finding added
    (``receipt_not_sealed``, or counted unseen) the first time the message is judged."""
    d = receipt.device
    first = sealed.where.get((d, entry.first_seq))
    last = sealed.where.get((d, entry.last_seq))
    again = (d, entry.message_hash) in judged
    judged.add((d, entry.message_hash))
    if first is not None and last is not None:
        outcome = sealed.anchored.get(first, Outcome.PENDING)
        if not again:
            per_block[(first, outcome)] = per_block.get((first, outcome), 0) + 1
        return outcome
    if again:
        return None
    missing = entry.seqs if first is None and last is None else (
        f"seq {entry.first_seq if first is None else entry.last_seq} of {entry.seqs}"
    )  # fmt: skip
    later = sealed.newest.get(d, -1) > entry.last_seq
    old = now_ms - receipt.stored_at_ms > grace_s * 1000
    if not (later or old):
        report.add(
            "receipt_not_sealed",
            Outcome.PENDING,
            f"device {d}: {missing} stored {_when(receipt.stored_at_ms)}, not sealed yet",
        )
        return None
    if sealed.unread:  # it may be where this key cannot look
        unseen.append(entry)
        return None
    report.not_sealed += 1
    because = "a later reading of the device is sealed" if later else (
        f"stored more than {grace_s:g} s ago"
    )  # fmt: skip
    report.add(
        "receipt_not_sealed",
        Outcome.FAILED,
        f"device {d}: {missing}, receipted by {receipt.gateway} at "
        f"{_when(receipt.stored_at_ms)}, is in no sealed block ({because}): the gateway "
        "acknowledged data it did not seal",
    )
    return None
