"""Which devices the chain says are active: a cache kept fresh block by block.

The ingest path must not call the chain for every message (tens of thousands a second), so
this cache answers from memory.  A watcher thread follows the ledger's event index and
applies ``DeviceRevoked`` events as soon as a new block appears, which is what makes a
revocation take effect at the gateway within one block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vitalchain.crypto.keys import PublicKey
from vitalchain.ledger import Ledger
from vitalchain.ledger.ledger import DeviceStatus

__all__ = ["DeviceRegistry"]


class DeviceRegistry:
    def __init__(
        self,
        ledger: Ledger,
        group_id: int,
        poll_s: float = 0.25,
        on_revoked: Callable[[str], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._group_id = group_id
        self._poll_s = poll_s
        self._on_revoked = on_revoked
        self._active: set[str] = set()
        self._revoked: set[str] = set()
        self._keys: dict[str, PublicKey] = {}
        self._cursor = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_block = -1
        self.refresh()

    def status(self, device: str) -> DeviceStatus:
        with self._lock:
            if device in self._revoked:
                return DeviceStatus.REVOKED
            if device in self._active:
                return DeviceStatus.ACTIVE
        # Not seen yet (associated moments ago, or by another gateway process): ask the chain.
        record = self._ledger.device(device)
        if record.group_id != self._group_id:
            return DeviceStatus.NONE
        with self._lock:
            (self._active if record.status is DeviceStatus.ACTIVE else self._revoked).add(device)
        return record.status

    def active(self) -> list[str]:
        """The group's devices the chain says are active now (as of the last refresh)."""
        with self._lock:
            return sorted(self._active)

    def public_key(self, device: str) -> PublicKey:
        """A device's key as associated on chain; keys never change, so each is asked once."""
        with self._lock:
            key = self._keys.get(device)
        if key is None:
            key = self._ledger.device_public_key(device)
            with self._lock:
                self._keys[device] = key
        return key

    def mark_active(self, device: str) -> None:
        with self._lock:
            if device not in self._revoked:
                self._active.add(device)

    def refresh(self) -> None:
        """Apply association and revocation events from blocks not yet seen."""
        new, cursor = self._ledger.events.since(self._cursor)
        fresh = [
            e
            for e in new
            if e.name in ("DeviceAssociated", "DeviceRevoked")
            and e.args.get("groupId") == self._group_id
        ]
        revoked_now: list[str] = []
        with self._lock:
            for event in fresh:
                device = event.args["device"]
                if event.name == "DeviceAssociated":
                    if device not in self._revoked:
                        self._active.add(device)
                else:
                    self._active.discard(device)
                    if device not in self._revoked:
                        self._revoked.add(device)
                        revoked_now.append(device)
            self._cursor = cursor
        if self._on_revoked:
            for device in revoked_now:
                self._on_revoked(device)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="revocation-watcher", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                block = self._ledger.block_number()
                if block != self._last_block:
                    self._last_block = block
                    self.refresh()
            except Exception:  # noqa: S112 - a node hiccup must not kill the watcher
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
