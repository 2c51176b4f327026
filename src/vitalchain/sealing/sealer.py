"""Sealing and anchoring: stored messages become signed, encrypted blocks; blocks become roots.

The sealer closes a patient's block when it holds ``max_readings`` readings, when its oldest
message has waited ``max_age_s``, or at once when asked (an abnormal reading must not wait).
Each block's data key is wrapped for the patient and for every provider whose consent covers
the block's vitals at that moment.  The anchorer puts the group log's root on chain, one
transaction for however many blocks were sealed since the last anchor (docs/spec/block.md,
anchor.md).

One patient's failure is that patient's alone: each patient is sealed in its own try, the
anchor in another, and a failing patient is logged (by pseudonym, never by address) once when
it starts failing and once when it recovers, not on every tick.  An outage of the chain or the
store is nobody's fault in particular: it stops the round, and the health monitor logs it.
:meth:`Sealer.status` gives what is failing and when sealing and anchoring last succeeded.

The anchors go through the master's chain outbox (``outbox``, ledger/outbox.py), keyed
``anchor:<group>:<tree size>``, so an anchor never shares a lock with alert records or
associations and survives an outage and a restart.  The anchor is recorded in the store (which
forgets the anchored blocks' plaintext) only once it is mined.  One anchor is queued at a time,
because each must start where the previous one ended: while the chain is down it stays queued
(the tick's wait for it ends at once, as soon as the outbox finds the chain unreachable, and
sealing goes on), and the next one covers whatever was sealed meanwhile.  After a restart the
anchor the previous run had queued is taken up again rather than queued twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitalchain.crypto.block import SectionPlan, seal_block
from vitalchain.crypto.keys import PrivateKey, PublicKey
from vitalchain.crypto.merkle import CompactRange
from vitalchain.ledger import ChainWriter, Ticket
from vitalchain.ledger.consent import ConsentView
from vitalchain.ledger.errors import ChainUnavailable
from vitalchain.ledger.ports import AnchorLogView
from vitalchain.logs import Transitions, pseudonym, safe_error
from vitalchain.store.base import AnchorRecord, Store
from vitalchain.store.errors import StoreUnavailable
from vitalchain.store.model import StoredMessage
from vitalchain.wire.block import Block, BlockEntry

__all__ = ["NO_READER_KEY", "Sealer", "SealingPolicy"]

log = logging.getLogger(__name__)

# Why a patient's readings wait: neither the patient nor a consented provider published a key.
NO_READER_KEY = "no_reader_key"
# Not one patient's problem: the whole round waits (and health reports the outage).
_OUTAGES = (ChainUnavailable, StoreUnavailable)


@dataclass(frozen=True, slots=True)
class SealingPolicy:
    max_readings: int = 120
    max_age_s: float = 60.0
    anchor_every_s: float = 30.0


@dataclass(frozen=True, slots=True)
class _QueuedAnchor:
    ticket: Ticket
    tree_size: int
    root: bytes


class Sealer:
    def __init__(
        self,
        *,
        store: Store,
        ledger: AnchorLogView,
        master: PrivateKey,
        group_id: int,
        policy: SealingPolicy = SealingPolicy(),
        outbox: ChainWriter,
        consent: ConsentView,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        anchor_wait_s: float = 120.0,
    ) -> None:
        """``outbox``: the master's chain outbox, the one way an anchor reaches the chain.
        ``consent``: who may read a block (and their keys), shared with the alarm service.
        ``anchor_wait_s``: how long :meth:`anchor` waits for a queued anchor to be mined
        before it raises ``chain_unavailable``."""
        self.store = store
        self.ledger = ledger
        self.outbox = outbox
        self.consent = consent
        self.anchor_wait_s = anchor_wait_s
        self._queued: _QueuedAnchor | None = None  # the anchor in the outbox, not settled yet
        self._adopted = False  # whether a queued anchor of an earlier run was looked for
        self._refusals = 0  # refused anchors so far: a retry needs a key of its own
        self._anchor_lock = threading.Lock()
        self._last_record: AnchorRecord | None = None
        self.master = master
        self.group_id = group_id
        self.policy = policy
        self.clock = clock
        self.random = random
        # The group log as O(log n) subtree roots, enough to append and anchor; the store keeps
        # the leaves, and proofs are built from them where they are served (sdk/source.py).
        self.tree = CompactRange.of(store.leaf_hashes(group_id))
        self._urgent: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_anchor = 0.0
        self._tick_jobs: list[Callable[[], None]] = []
        self._failing = Transitions()  # pseudonym → why its readings are not sealed
        self._problems = Transitions()  # "anchor", "seal_due", "job …" → why it failed
        self._last_seal_ms: int | None = None
        self._last_anchor_ms: int | None = None

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
        """Seal every patient whose block is due; a patient that fails is skipped (and shown
        in :meth:`status`), the others are sealed all the same.  An outage raises."""
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
                try:
                    block = self.seal(pending.patient)
                except _OUTAGES:
                    raise
                except Exception:  # noted (once) by seal(); the next patient goes on
                    break
                if block is None:
                    break
                sealed.append(block)
                remaining -= block.readings
        return sealed

    def _note(self, patient: str, problem: str | None) -> None:
        """Log a patient's sealing state when it changes: failing, failing otherwise, fine."""
        tag = pseudonym(patient)
        before = self._failing.change(tag, problem)
        if before is None:
            return
        if problem is None:
            log.info("sealing %s works again (was %s)", tag, before)
        elif problem == NO_READER_KEY:
            log.warning(
                "no published key for patient %s or any consented provider: not sealed yet", tag
            )
        else:
            log.error("sealing %s failed: %s; its readings stay in the journal", tag, problem)

    def _problem(self, what: str, exc: BaseException | None) -> None:
        """Log a round-wide step (anchoring, a tick job) when it starts or stops failing."""
        code = None if exc is None else safe_error(exc)
        before = self._problems.change(what, code)
        if before is None:
            return
        if code is None:
            log.info("%s works again (was %s)", what, before)
        elif isinstance(exc, _OUTAGES):  # the health monitor logs outages, once
            log.debug("%s waits for the chain or the store", what)
        else:
            log.error("%s failed: %s; retrying every tick", what, code)

    def status(self) -> dict[str, Any]:
        """For health: ``failing`` maps each patient pseudonym whose readings are not being
        sealed to a code (``no_reader_key``, or the error's code such as ``invalid_address``);
        ``errors`` maps a failing round-wide step (``anchor``, ``seal_due``, ``job <name>``) to
        its code; ``last_seal_at_ms`` / ``last_anchor_at_ms`` are when (ms since the epoch, by
        the sealer's clock) this process last sealed a block and recorded an anchor (None:
        not yet)."""
        return {
            "failing": self._failing.current(),
            "errors": self._problems.current(),
            "last_seal_at_ms": self._last_seal_ms,
            "last_anchor_at_ms": self._last_anchor_ms,
        }

    def _readers(self, patient: str, vitals: int) -> list[PublicKey]:
        """The patient, and every provider the chain says may read these vitals right now
        (by the latest block's time, not this gateway's clock).  The caller applies the
        chain's events first, so a grant or revoke applies to the next block sealed after."""
        readers = [patient, *self.consent.readers(patient, vitals)]
        keys = [self.consent.key_of(address) for address in readers]
        return [k for k in keys if k is not None]

    def seal(self, patient: str) -> Block | None:
        """Seal the patient's oldest unsealed messages into its next block (None: nothing to
        seal, or no reader has a key yet).  A failure is noted for :meth:`status` and raised."""
        try:
            block = self._seal(patient)
        except _OUTAGES:
            raise
        except Exception as exc:
            self._note(patient, safe_error(exc))
            raise
        if block is not None:
            self._note(patient, None)
            self._last_seal_ms = int(self.clock() * 1000)
        return block

    def _seal(self, patient: str) -> Block | None:
        messages = self.store.unsealed(self.group_id, patient, self.policy.max_readings)
        if not messages:
            return None
        # One section per consent scope (the vitals of a message), so each provider is
        # given the key to exactly the messages its consent covers (block.md, v2).
        by_scope: dict[int, list[StoredMessage]] = {}
        for stored in messages:
            scope = 0
            for reading in stored.message.readings:
                scope |= reading.vital.bit
            by_scope.setdefault(scope, []).append(stored)
        self.consent.refresh()
        sections = []
        for scope, part in sorted(by_scope.items()):
            readers = self._readers(patient, scope)
            if not readers:
                self._note(patient, NO_READER_KEY)
                return None
            sections.append(
                SectionPlan(
                    scope=scope,
                    readings=sum(len(m.message.readings) for m in part),
                    entries=[
                        BlockEntry(m.message.device, m.message.payload, m.message.signature)
                        for m in part
                    ],
                    readers=readers,
                )
            )
        previous = self.store.last_block(self.group_id, patient)
        block, ring = seal_block(
            self.master,
            group_id=self.group_id,
            patient=patient,
            number=1 if previous is None else previous.number + 1,
            previous=bytes(32) if previous is None else previous.hash,
            leaf_index=len(self.tree),
            sealed_at_ms=int(self.clock() * 1000),
            sections=sections,
            random=self.random,
        )
        self.store.add_block(block, ring, [m.id for m in messages])
        self.tree = self.tree.append(block.leaf)
        return block

    # -- anchoring --------------------------------------------------------------------------------

    def anchor(self) -> AnchorRecord | None:
        """Anchor the log's current root, if it grew since the last anchor: one transaction.

        A refusal or an unreachable chain is noted for :meth:`status` (logged once until an
        anchor succeeds) and raised; the blocks stay, and the next anchor covers them.
        """
        try:
            record = self._anchor()
        except Exception as exc:
            self._problem("anchor", exc)
            raise
        self._problem("anchor", None)
        return record

    def _record(self, size: int, root: bytes, tx_hash: bytes) -> AnchorRecord:
        record = AnchorRecord(self.group_id, size, root, tx_hash, int(self.clock() * 1000))
        self.store.record_anchor(record)  # also forgets the plaintext of the anchored blocks
        self._last_anchor = time.monotonic()
        self._last_anchor_ms = record.anchored_at_ms
        self._last_record = record
        return record

    def _anchor(self) -> AnchorRecord | None:
        """Queue the current root (or take the anchor already queued), wait for it to be
        mined without holding any lock, and record it; again if the log grew meanwhile."""
        record: AnchorRecord | None = None
        for _ in range(2):  # the queued anchor may be an older root; then the current one
            with self._anchor_lock:
                settled = self._settle()
                record = settled or record
                queued = self._queued or self._queue_anchor()
            if queued is None:
                return record
            outcome = queued.ticket.outcome(self.anchor_wait_s)
            if outcome is None:
                raise ChainUnavailable(
                    "the anchor is queued but not mined in time; it stays queued"
                )
            with self._anchor_lock:
                settled = self._settle()  # raises a refusal (and clears it for the next try)
            if outcome.error is not None:
                raise outcome.error  # settled by the background thread first
            last = self._last_record
            if settled is None and last is not None and last.tree_size == queued.tree_size:
                settled = last  # the background thread settled it first
            record = settled or record
            if record is not None and record.tree_size >= len(self.tree):
                return record
        return record

    def _settle(self) -> AnchorRecord | None:
        """The queued anchor, if it finished: recorded when mined; its error raised when
        refused (and the next tick tries again).  Under ``_anchor_lock``."""
        queued = self._queued
        if queued is None:
            return None
        outcome = queued.ticket.outcome(0)
        if outcome is None:
            return None
        self._queued = None
        if outcome.error is not None:
            self._last_anchor = 0.0  # retry on the next tick
            self._refusals += 1
            raise outcome.error
        assert outcome.tx is not None
        return self._record(queued.tree_size, queued.root, outcome.tx.tx_hash)

    def _queue_anchor(self) -> _QueuedAnchor | None:
        """Put the log's current root in the outbox, if it grew since the chain's latest
        anchor (None: nothing to anchor).  Under ``_anchor_lock``."""
        prefix = f"anchor:{self.group_id}:"
        if not self._adopted:  # an anchor queued by the previous run of this gateway
            self._adopted = True
            earlier = self.outbox.tickets(prefix)
            if earlier:
                size = int(earlier[-1].key.removeprefix(prefix).split(":")[0])
                if size <= len(self.tree):  # an earlier size's root needs the store's leaves
                    leaves = self.store.leaf_hashes(self.group_id)[:size]
                    self._queued = _QueuedAnchor(earlier[-1], size, CompactRange.of(leaves).root())
                    return self._queued
        tree = self.tree  # one immutable snapshot: its size and root agree
        size = len(tree)
        latest = self.ledger.latest_anchor(self.group_id)
        anchored = latest.tree_size if latest else 0
        if size <= anchored:
            return None
        root = tree.root()
        # The outbox keeps a finished key's outcome: after a refusal, the same size again is a
        # new entry (else it would get the old refusal back).
        key = f"{prefix}{size}" + (f":{self._refusals}" if self._refusals else "")
        ticket = self.outbox.submit(
            key, "AnchorLog", "anchor", self.group_id, root, size, anchored, size - 1
        )
        self._queued = _QueuedAnchor(ticket, size, root)
        return self._queued

    # -- background -------------------------------------------------------------------------------

    def start(self, tick_s: float = 1.0) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self._wake.wait(tick_s)
                self._wake.clear()
                self.tick()

        self._thread = threading.Thread(target=run, name="sealer", daemon=True)
        self._thread.start()

    def tick(self) -> None:
        """One round of the background thread: tick jobs, sealing, anchoring when due.

        Each in its own try, so that none can stop another; each failure is noted and logged
        once (see :meth:`status`), an outage only at debug level (health reports it).
        """
        for job in self._tick_jobs:
            what = "job " + getattr(job, "__qualname__", "tick")
            try:
                job()
            except Exception as exc:
                self._problem(what, exc)
            else:
                self._problem(what, None)
        try:
            self.seal_due()
        except Exception as exc:
            self._problem("seal_due", exc)
        else:
            self._problem("seal_due", None)
        if time.monotonic() - self._last_anchor >= self.policy.anchor_every_s:
            with contextlib.suppress(Exception):  # noted by anchor(); retried next time
                self.anchor()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
