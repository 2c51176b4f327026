"""Which devices the chain says are active: a cache kept fresh block by block.

The ingest path must not call the chain for every message (tens of thousands a second), so
this cache answers from memory.  It subscribes to the group's association and revocation
events on the process's :class:`~vitalchain.ledger.watcher.ChainWatcher` (history replayed
first); whoever made the watcher runs its thread (node.py: polled every ``revocation_poll_s``),
so a revocation takes effect at the gateway within one block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vitalchain.crypto.keys import PublicKey
from vitalchain.gateway.errors import GatewayError
from vitalchain.ledger.events import DEVICE_ASSOCIATED, DEVICE_REVOKED, Event
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.ledger.ports import TrustGroupsView
from vitalchain.ledger.watcher import ChainWatcher

__all__ = ["DeviceRegistry"]


class DeviceRegistry:
    def __init__(
        self,
        ledger: TrustGroupsView,
        group_id: int,
        *,
        watcher: ChainWatcher,
        on_revoked: Callable[[str], None] | None = None,
    ) -> None:
        """``watcher``: the process's one chain watcher (its owner starts and stops it)."""
        self._ledger = ledger
        self._group_id = group_id
        self._on_revoked = on_revoked
        self._active: set[str] = set()
        self._revoked: set[str] = set()
        self._keys: dict[str, PublicKey] = {}
        self._lock = threading.Lock()
        self._watcher = watcher
        watcher.subscribe((DEVICE_ASSOCIATED, DEVICE_REVOKED), self._apply, replay=True)

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

    def check_active(self, device: str) -> None:
        """Telemetry check 3 (docs/spec/telemetry.md), for every route a device uses: refused
        ``device_revoked`` or ``device_not_active`` unless the chain says it is active."""
        status = self.status(device)
        if status is DeviceStatus.REVOKED:
            raise GatewayError("device_revoked", "the device's association was revoked on chain")
        if status is not DeviceStatus.ACTIVE:
            raise GatewayError("device_not_active", "the device is not associated on chain")

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
        self._watcher.poll()

    def _apply(self, event: Event) -> None:
        if event.args.get("groupId") != self._group_id:
            return
        device = event.args["device"]
        with self._lock:
            if event.key == DEVICE_ASSOCIATED:
                if device not in self._revoked:
                    self._active.add(device)
                return
            self._active.discard(device)
            if device in self._revoked:
                return
            self._revoked.add(device)
        if self._on_revoked:
            self._on_revoked(device)
