"""Sealing and anchoring: stored messages become signed, encrypted blocks; blocks become roots.

The sealer closes a patient's block when it holds ``max_readings`` readings, when its oldest
message has waited ``max_age_s``, or at once when asked (an abnormal reading must not wait).
Each block's data key is wrapped for the patient and for every provider whose consent covers
the block's vitals at that moment.  The anchorer puts the group log's root on chain, one
transaction for however many blocks were sealed since the last anchor (docs/spec/block.md,
anchor.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vitalchain.crypto.keys import PrivateKey, PublicKey
from vitalchain.crypto.merkle import MerkleTree
from vitalchain.ledger import Consent, ConsentStatus, ContractError, Ledger
from vitalchain.store.base import AnchorRecord, Store
from vitalchain.store.blocks import Block, BlockEntry, seal_block

__all__ = ["Sealer", "SealingPolicy"]

log = logging.getLogger(__name__)

# A consent this close to its expiry (by the latest block's time) is left to the contract, which
# judges it by the time of the block its call runs in.
EXPIRY_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class SealingPolicy:
    max_readings: int = 120
    max_age_s: float = 60.0
    anchor_every_s: float = 30.0


class Sealer:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        master: PrivateKey,
        group_id: int,
        policy: SealingPolicy = SealingPolicy(),
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.master = master
        self.group_id = group_id
        self.policy = policy
        self.clock = clock
        self.random = random
        self.tree = MerkleTree(store.leaf_hashes(group_id))
        self._keys: dict[str, PublicKey] = {}
        # Consents per patient, as consentOf gives them; a ConsentRegistry event about the
        # patient drops its entry (checked before every block), so a grant or revoke applies
        # to the next block sealed after its transaction.
        self._consents: dict[str, dict[str, Consent]] = {}
        self._cursor = 0
        self._consents_lock = threading.Lock()
        self._urgent: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_anchor = 0.0
        self._tick_jobs: list[Callable[[], None]] = []

    def on_tick(self, job: Callable[[], None]) -> None:
        """Also run ``job`` on every tick of the background thread (e.g. policy refresh)."""
        self._tick_jobs.append(job)

    # -- sealing ----------------------------------------------------------------------------------

    def seal_soon(self, patient: str) -> None:
        """An abnormal reading arrived: seal this patient's block on the next tick, not later."""
        with self._lock:
            self._urgent.add(patient)
        self._wake.set()

    def seal_due(self) -> list[Block]:
        now_ms = int(self.clock() * 1000)
        with self._lock:
            urgent, self._urgent = self._urgent, set()
        sealed = []
        for pending in self.store.pending_patients():
            if pending.group_id != self.group_id:
                continue
            drain = (
                pending.patient in urgent
                or now_ms - pending.oldest_received_ms >= self.policy.max_age_s * 1000
            )
            remaining = pending.readings
            # Full blocks while there are enough readings; everything if urgent or old.
            while remaining >= self.policy.max_readings or (drain and remaining > 0):
                block = self.seal(pending.patient)
                if block is None:
                    break
                sealed.append(block)
                remaining -= block.readings
        return sealed

    def _key_of(self, address: str) -> PublicKey | None:
        if address not in self._keys:
            if not self.ledger.has_key(address):
                return None
            self._keys[address] = self.ledger.public_key_of(address)
        return self._keys[address]

    def recipients(self, patient: str, vitals: int) -> list[PublicKey]:
        """The patient, and every provider the chain says may read these vitals right now."""
        with self._consents_lock:
            events, self._cursor = self.ledger.events.since(self._cursor)
            for event in events:
                if event.contract == "ConsentRegistry" and "patient" in event.args:
                    self._consents.pop(event.args["patient"], None)
            consents = self._consents.get(patient)
            if consents is None:
                consents = {
                    p: self.ledger.consent_of(patient, p) for p in self.ledger.providers_of(patient)
                }
                self._consents[patient] = consents
        now = self.ledger.timestamp()  # consent expiry is chain time, not this gateway's clock
        readers = [patient]
        for provider, consent in consents.items():
            covers = consent.status is ConsentStatus.GRANTED and consent.scope & vitals == vitals
            clearly_valid = covers and now + EXPIRY_MARGIN_S < consent.expires_at
            # Near expiry, or an emergency access (whose scope consentOf does not give): the
            # contract decides.
            ask_chain = not clearly_valid and (
                (covers and now - EXPIRY_MARGIN_S < consent.expires_at)
                or now - EXPIRY_MARGIN_S < consent.break_glass_until
            )
            if clearly_valid or (ask_chain and self.ledger.has_access(patient, provider, vitals)):
                readers.append(provider)
        keys = [self._key_of(address) for address in readers]
        return [k for k in keys if k is not None]

    def seal(self, patient: str) -> Block | None:
        """Seal the patient's oldest unsealed messages into its next block."""
        messages = self.store.unsealed(self.group_id, patient, self.policy.max_readings)
        readings = sum(len(m.message.readings) for m in messages)
        if not messages:
            return None
        vitals = 0
        for stored in messages:
            for reading in stored.message.readings:
                vitals |= reading.vital.bit
        recipients = self.recipients(patient, vitals)
        if not recipients:
            log.warning(
                "no published key for patient %s or any consented provider: not sealed yet", patient
            )
            return None
        previous = self.store.last_block(self.group_id, patient)
        block, ring = seal_block(
            self.master,
            group_id=self.group_id,
            patient=patient,
            number=1 if previous is None else previous.number + 1,
            previous=bytes(32) if previous is None else previous.hash,
            leaf_index=len(self.tree),
            sealed_at_ms=int(self.clock() * 1000),
            entries=[
                BlockEntry(m.message.device, m.message.payload, m.message.signature)
                for m in messages
            ],
            readings=readings,
            vitals=vitals,
            recipients=recipients,
            random=self.random,
        )
        self.store.add_block(block, ring, [m.id for m in messages])
        self.tree.append_hash(block.leaf)
        return block

    # -- anchoring --------------------------------------------------------------------------------

    def anchor(self) -> AnchorRecord | None:
        """Anchor the log's current root, if it grew since the last anchor: one transaction."""
        size = len(self.tree)
        latest = self.ledger.latest_anchor(self.group_id)
        anchored = latest.tree_size if latest else 0
        if size <= anchored:
            return None
        root = self.tree.root(size)
        try:
            result = self.ledger.anchor(self.master, self.group_id, root, size, anchored)
        except ContractError:
            log.exception("anchor refused")
            return None
        record = AnchorRecord(self.group_id, size, root, result.tx_hash, int(self.clock() * 1000))
        self.store.record_anchor(record)
        self._last_anchor = time.monotonic()
        return record

    # -- background -------------------------------------------------------------------------------

    def start(self, tick_s: float = 1.0) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self._wake.wait(tick_s)
                self._wake.clear()
                for job in self._tick_jobs:
                    try:
                        job()
                    except Exception:  # one failing job must not stop sealing or the others
                        log.exception("a tick job failed; retrying next tick")
                try:
                    self.seal_due()
                    if time.monotonic() - self._last_anchor >= self.policy.anchor_every_s:
                        self.anchor()
                except Exception:
                    log.exception("sealing or anchoring failed; retrying next tick")

        self._thread = threading.Thread(target=run, name="sealer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
