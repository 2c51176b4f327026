"""In-memory stand-ins for the narrow ledger ports (vitalchain/ledger/ports.py).

A unit test of gateway logic (the device registry, the threshold policy, the consent view,
the chain watcher) needs what the chain answers and which events it emits, not an EVM:
:class:`FakeChain` keeps trust groups, keys, consents and thresholds in dictionaries, and each
change appends the event the contract would emit to :class:`FakeEvents`.  It follows the
contracts' rules only as far as these consumers rely on them; the contracts themselves are
tested by tests/support/ledger.py and tests/support/policy.py on the embedded chain and anvil.

``calls`` counts every read a consumer makes (to assert a cache answered), and ``down = True``
makes every read raise :class:`ChainUnavailable`, as a node that went away does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vitalchain.crypto.keys import PublicKey
from vitalchain.ledger import ChainUnavailable, Consent, ConsentStatus, Device, DeviceStatus, Group
from vitalchain.ledger.errors import AlertError, KeyDirectoryError
from vitalchain.ledger.events import (
    CONSENT_GRANTED,
    CONSENT_REVOKED,
    DEVICE_ASSOCIATED,
    DEVICE_REVOKED,
    KEY_PUBLISHED,
    THRESHOLD_SET,
    Event,
    EventName,
)

if TYPE_CHECKING:
    from vitalchain.ledger.ports import (
        AlertRegistryView,
        ConsentChain,
        EventLog,
        TrustGroupsView,
    )

__all__ = ["FakeChain", "FakeEvents"]


class FakeEvents:
    """:class:`~vitalchain.ledger.ports.EventLog` over a list."""

    def __init__(self, chain: FakeChain) -> None:
        self._chain = chain
        self._events: list[Event] = []

    def emit(self, name: EventName, **args: Any) -> None:
        self._events.append(
            Event(
                name.contract,
                name.name,
                args,
                self._chain.block,
                len(self._events).to_bytes(32, "big"),
                0,
            )
        )

    def query(self, name: str, **where: Any) -> list[Event]:
        self._chain.read("events")
        return [
            e
            for e in self._events
            if e.name == name and all(e.args.get(k) == v for k, v in where.items())
        ]

    def all(self) -> Iterable[Event]:
        self._chain.read("events")
        return tuple(self._events)

    def since(self, cursor: int) -> tuple[list[Event], int]:
        self._chain.read("events")
        return self._events[cursor:], len(self._events)


@dataclass
class FakeChain:
    """Trust groups, keys, consents, thresholds and the chain clock, in memory.

    Implements ``TrustGroupsView``, ``KeyDirectoryView``, ``ConsentRegistryView``,
    ``AlertRegistryView`` and ``ChainBasics``; each change mines a block of its own."""

    now: int = 1_700_000_000
    block: int = 1
    chain_id: int = 31337
    down: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    groups: dict[int, Group] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    device_keys: dict[str, PublicKey] = field(default_factory=dict)
    keys: dict[str, PublicKey] = field(default_factory=dict)
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    providers: dict[str, list[str]] = field(default_factory=dict)
    thresholds: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = FakeEvents(self)

    def read(self, what: str) -> None:
        if self.down:
            raise ChainUnavailable("the fake chain is down")
        self.calls[what] += 1

    def _mine(self) -> None:
        self.block += 1
        self.now += 2

    # -- changes, each with the event its contract emits ------------------------------------------

    def associate(self, group_id: int, key: PublicKey, object_id: int = 1) -> str:
        address = key.address
        self.devices[address] = Device(address, group_id, object_id, DeviceStatus.ACTIVE)
        self.device_keys[address] = key
        self._mine()
        self.events.emit(DEVICE_ASSOCIATED, groupId=group_id, device=address, objectId=object_id)
        return address

    def revoke_device(self, group_id: int, device: str) -> None:
        record = self.devices[device]
        self.devices[device] = Device(device, group_id, record.object_id, DeviceStatus.REVOKED)
        self._mine()
        self.events.emit(DEVICE_REVOKED, groupId=group_id, device=device)

    def publish_key(self, key: PublicKey) -> None:
        self.keys[key.address] = key
        self._mine()
        self.events.emit(KEY_PUBLISHED, account=key.address)

    def grant(self, patient: str, provider: str, scope: int, expires_at: int) -> None:
        if provider not in self.providers.setdefault(patient, []):
            self.providers[patient].append(provider)
        self.consents[(patient, provider)] = Consent(ConsentStatus.GRANTED, scope, expires_at, 0)
        self._mine()
        self.events.emit(
            CONSENT_GRANTED, patient=patient, provider=provider, scope=scope, expiresAt=expires_at
        )

    def revoke(self, patient: str, provider: str) -> None:
        old = self.consents[(patient, provider)]
        self.consents[(patient, provider)] = Consent(ConsentStatus.REVOKED, old.scope, 0, 0)
        self._mine()
        self.events.emit(CONSENT_REVOKED, patient=patient, provider=provider)

    def set_threshold(self, patient: str, vital: int, low: int, high: int) -> None:
        self.thresholds[(patient, vital)] = (low, high)
        self._mine()
        self.events.emit(THRESHOLD_SET, patient=patient, vital=vital, low=low, high=high)

    # -- ChainBasics -------------------------------------------------------------------------------

    def address_of(self, contract: str) -> str:
        return "0x" + contract.encode().hex()[:40].rjust(40, "0")

    def block_number(self) -> int:
        self.read("block_number")
        return self.block

    def timestamp(self) -> int:
        self.read("timestamp")
        return self.now

    def ping(self, timeout: float) -> int:
        return self.block_number()

    # -- TrustGroupsView --------------------------------------------------------------------------

    def group(self, group_id: int) -> Group | None:
        self.read("group")
        return self.groups.get(group_id)

    def device(self, address: str) -> Device:
        self.read("device")
        return self.devices.get(address, Device(address, 0, 0, DeviceStatus.NONE))

    def is_active_device(self, address: str) -> bool:
        return self.device(address).status is DeviceStatus.ACTIVE

    def device_public_key(self, address: str) -> PublicKey:
        self.read("device_public_key")
        return self.device_keys[address]

    def object_id_taken(self, object_id: int) -> bool:
        self.read("object_id_taken")
        return any(d.object_id == object_id for d in self.devices.values())

    def devices_of(self, group_id: int, offset: int = 0, limit: int = 10_000) -> list[str]:
        self.read("devices_of")
        found = [a for a, d in self.devices.items() if d.group_id == group_id]
        return found[offset : offset + limit]

    # -- KeyDirectoryView -------------------------------------------------------------------------

    def public_key_of(self, address: str) -> PublicKey:
        self.read("public_key_of")
        if address not in self.keys:
            raise KeyDirectoryError("KeyDirectory", "NoKey", {"account": address})
        return self.keys[address]

    def has_key(self, address: str) -> bool:
        self.read("has_key")
        return address in self.keys

    # -- ConsentRegistryView ----------------------------------------------------------------------

    def is_provider(self, address: str) -> bool:
        self.read("is_provider")
        return any(address in p for p in self.providers.values())

    def has_access(self, patient: str, provider: str, scope: int) -> bool:
        """The contract's ``hasAccess`` (emergency access left out), at the latest block."""
        self.read("has_access")
        consent = self.consents.get((patient, provider))
        if consent is None or consent.status is not ConsentStatus.GRANTED:
            return False
        return self.now < consent.expires_at and scope & ~consent.scope == 0

    def consent_of(self, patient: str, provider: str) -> Consent:
        self.read("consent_of")
        return self.consents.get((patient, provider), Consent(ConsentStatus.NONE, 0, 0, 0))

    def providers_of(self, patient: str) -> list[str]:
        self.read("providers_of")
        return list(self.providers.get(patient, []))

    # -- AlertRegistryView ------------------------------------------------------------------------

    def threshold_of(self, patient: str, vital: int) -> tuple[int, int] | None:
        self.read("threshold_of")
        return self.thresholds.get((patient, vital))

    def evaluate(self, patient: str, vital: int, value: int) -> int:
        self.read("evaluate")
        if (patient, vital) not in self.thresholds:
            raise AlertError("AlertRegistry", "NoPolicy", {"patient": patient, "vital": vital})
        low, high = self.thresholds[(patient, vital)]
        return -1 if value < low else 1 if value > high else 0

    def key_image_used(self, key_image: bytes) -> bool:
        self.read("key_image_used")
        return False

    def alert_count(self, group_id: int) -> int:
        self.read("alert_count")
        return 0


if TYPE_CHECKING:

    def _fits_the_ports(chain: FakeChain) -> None:
        """Never called: mypy checks here that the fake is every port it stands in for."""
        groups: TrustGroupsView = chain
        consents: ConsentChain = chain
        alerts: AlertRegistryView = chain
        events: EventLog = chain.events
        del groups, consents, alerts, events
