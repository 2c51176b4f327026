"""Our own index of contract events, filled incrementally, and the names of those events.

eth-tester's ``get_logs`` from block 0 slows quadratically as the chain grows, and a gateway
asks for events often; so each sync asks only for the blocks since the last one.

Every event a consumer follows is named once here as an :class:`EventName` (contract, event),
the key a :class:`~vitalchain.ledger.watcher.ChainWatcher` subscription takes, so a renamed
contract event is one edit and a typo is an import error rather than a silent filter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract

__all__ = [
    "ACCESS_REQUESTED",
    "ALERT_RECORDED",
    "ANCHORED",
    "BREAK_GLASS_ACCESSED",
    "CONSENT_DENIED",
    "CONSENT_EVENTS",
    "CONSENT_GRANTED",
    "CONSENT_REVOKED",
    "DEVICE_ASSOCIATED",
    "DEVICE_REVOKED",
    "GROUP_CREATED",
    "KEY_PUBLISHED",
    "MASTER_ROTATED",
    "PROVIDER_REGISTERED",
    "THRESHOLD_SET",
    "Event",
    "EventIndex",
    "EventName",
]


@dataclass(frozen=True, slots=True)
class EventName:
    """One contract event: the contract's name in the deployment and the event's ABI name."""

    contract: str
    name: str


GROUP_CREATED = EventName("TrustGroups", "GroupCreated")
DEVICE_ASSOCIATED = EventName("TrustGroups", "DeviceAssociated")
DEVICE_REVOKED = EventName("TrustGroups", "DeviceRevoked")
MASTER_ROTATED = EventName("TrustGroups", "MasterRotated")
KEY_PUBLISHED = EventName("KeyDirectory", "KeyPublished")
PROVIDER_REGISTERED = EventName("ConsentRegistry", "ProviderRegistered")
ACCESS_REQUESTED = EventName("ConsentRegistry", "AccessRequested")
CONSENT_GRANTED = EventName("ConsentRegistry", "ConsentGranted")
CONSENT_DENIED = EventName("ConsentRegistry", "ConsentDenied")
CONSENT_REVOKED = EventName("ConsentRegistry", "ConsentRevoked")
BREAK_GLASS_ACCESSED = EventName("ConsentRegistry", "BreakGlassAccessed")
ANCHORED = EventName("AnchorLog", "Anchored")
THRESHOLD_SET = EventName("AlertRegistry", "ThresholdSet")
ALERT_RECORDED = EventName("AlertRegistry", "AlertRecorded")

# The ConsentRegistry events about one patient's consents (all but ProviderRegistered): any
# of them may change who may read that patient's data.
CONSENT_EVENTS = (
    ACCESS_REQUESTED,
    CONSENT_GRANTED,
    CONSENT_DENIED,
    CONSENT_REVOKED,
    BREAK_GLASS_ACCESSED,
)


@dataclass(frozen=True, slots=True)
class Event:
    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    transaction_hash: bytes
    log_index: int

    @property
    def key(self) -> EventName:
        return EventName(self.contract, self.name)


class EventIndex:
    def __init__(self, w3: Web3, contracts: dict[str, Contract], from_block: int) -> None:
        self._w3 = w3
        self._by_address = {c.address: (name, c) for name, c in contracts.items()}
        self._next_block = from_block
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._topics: dict[bytes, tuple[str, str]] = {}
        for name, contract in contracts.items():
            abi: list[dict[str, Any]] = list(contract.abi)  # type: ignore[arg-type]
            for entry in abi:
                if entry.get("type") == "event":
                    sig = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                    self._topics[bytes(Web3.keccak(text=sig))] = (name, entry["name"])

    def sync(self) -> None:
        with self._lock:
            latest = self._w3.eth.block_number
            if latest < self._next_block:
                return
            logs = self._w3.eth.get_logs(
                {
                    "fromBlock": self._next_block,
                    "toBlock": latest,
                    "address": list(self._by_address),
                }
            )
            for log in logs:
                self._ingest(log)
            self._next_block = latest + 1

    def _ingest(self, log: Any) -> None:
        topic0 = bytes(log["topics"][0]) if log["topics"] else b""
        if topic0 not in self._topics:
            return
        contract_name, event_name = self._topics[topic0]
        _, contract = self._by_address[log["address"]]
        decoded = contract.events[event_name]().process_log(log)
        self._events.append(
            Event(
                contract_name,
                event_name,
                dict(decoded["args"]),
                int(log["blockNumber"]),
                bytes(log["transactionHash"]),
                int(log["logIndex"]),
            )
        )

    def query(self, name: str, **where: Any) -> list[Event]:
        """Events called ``name`` whose args equal every ``where`` item, oldest first."""
        self.sync()
        return [
            e
            for e in self._events
            if e.name == name and all(e.args.get(k) == v for k, v in where.items())
        ]

    def all(self) -> Iterable[Event]:
        self.sync()
        return tuple(self._events)

    def since(self, cursor: int) -> tuple[list[Event], int]:
        """Events after position ``cursor``, and the cursor to pass next time (followers)."""
        self.sync()
        with self._lock:
            return self._events[cursor:], len(self._events)
