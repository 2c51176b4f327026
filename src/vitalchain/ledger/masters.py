"""Who was a trust group's master, and when: the facts a gateway's signed receipt is judged by.

Why here: a device checks each receipt as it arrives (``device.client``), and a patient or
provider checks a device's collected receipts later (``vitalchain verify receipts``); both
trust only the chain, so the chain's reading of the masters has one owner, on the ledger
layer that both may use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vitalchain.crypto.keys import PublicKey, Signature, message_digest
from vitalchain.errors import DecodeError, InvalidSignature, VitalchainError
from vitalchain.ledger.events import GROUP_CREATED, MASTER_ROTATED
from vitalchain.ledger.ledger import Ledger
from vitalchain.wire.receipt import RECEIPT_CONTEXT, MasterTerm, Receipt, signer_allowed

__all__ = ["MASTERS_MAX_AGE_S", "GroupMasters", "receipt_signer"]

MASTERS_MAX_AGE_S = 10.0


def _invalid(why: str) -> VitalchainError:
    return VitalchainError(f"the receipt does not verify: {why}", code="invalid_receipt")


class GroupMasters:
    """Every address that has been a group's master, and until when, from the chain's
    ``GroupCreated`` and ``MasterRotated`` events (as ``sdk.verify.ChainFacts`` collects
    them, with the rotation's block time as the end of the old master's term).

    Read again once older than ``max_age_s`` (on ``clock``), and whenever a receipt's signer
    is not allowed by what was read: a rotation since then may explain it either way."""

    def __init__(
        self,
        chain: Ledger,
        group_id: int,
        *,
        max_age_s: float = MASTERS_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain = chain
        self.group_id = group_id
        self.max_age_s = max_age_s
        self._clock = clock
        self._terms: tuple[MasterTerm, ...] | None = None
        self._read_at = 0.0
        self._block_times: dict[int, int] = {}
        self._lock = threading.Lock()

    def terms(self, *, refresh: bool = False) -> tuple[MasterTerm, ...]:
        with self._lock:
            now = self._clock()
            if refresh or self._terms is None or now - self._read_at >= self.max_age_s:
                self._terms = self._read()
                self._read_at = now
            return self._terms

    def _read(self) -> tuple[MasterTerm, ...]:
        events = self.chain.events
        created = events.query(GROUP_CREATED.name, groupId=self.group_id)
        rotated = events.query(MASTER_ROTATED.name, groupId=self.group_id)
        terms = [MasterTerm(e.args["master"], None) for e in created]
        for event in rotated:  # oldest first: each closes the open term of its old master
            ended = self._block_times.get(event.block_number)
            if ended is None:  # a block's time never changes: ask the node once
                ended = self._block_times[event.block_number] = self.chain.timestamp(
                    event.block_number
                )
            terms = [
                MasterTerm(t.address, ended)
                if t.until_s is None and t.address == event.args["oldMaster"]
                else t
                for t in terms
            ]
            terms.append(MasterTerm(event.args["newMaster"], None))
        return tuple(terms)


def receipt_signer(
    receipt: Receipt, masters: GroupMasters | None, master: str | None = None
) -> str:
    """The gateway that signed ``receipt``, if it was the group's master when the receipt
    says it stored the message (per ``masters``, the chain's; or, without them, the one
    ``master`` address known); ``invalid_receipt`` otherwise.  The group and device a
    receipt names are the caller's to compare."""
    try:
        signer = PublicKey.recover(
            Signature.from_rsv(receipt.signature),
            message_digest(receipt.signed_part(), RECEIPT_CONTEXT),
        ).address
    except (DecodeError, InvalidSignature):
        raise _invalid("the signature does not verify") from None
    if signer != receipt.gateway:
        raise _invalid("it is not signed by the gateway it names")
    if masters is not None:
        allowed = signer_allowed(masters.terms(), signer, receipt.stored_at_ms)
        if not allowed:  # perhaps a rotation since the masters were read
            allowed = signer_allowed(masters.terms(refresh=True), signer, receipt.stored_at_ms)
    else:
        allowed = master is not None and signer == master
    if not allowed:
        raise _invalid("the signer was not the group's master at that time")
    return signer
