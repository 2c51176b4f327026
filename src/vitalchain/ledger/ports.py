"""Narrow views of the ledger, one per contract: what each consumer may ask of the chain.

:class:`~vitalchain.ledger.ledger.Ledger` implements every protocol here (one object per
process), but a consumer's constructor names only the protocol it uses: the threshold policy
needs :class:`AlertRegistryView`, the device registry :class:`TrustGroupsView`, and so on.
That says at the signature what a component can do to the chain (a read-only view cannot
send), and lets a unit test hand in a small in-memory fake (tests/support/fakes.py)
instead of an EVM.

Each contract has a ``…View`` (its calls that send nothing) and a full protocol that adds the
transactions, which take the acting key first.  :class:`ChainBasics` is the chain itself
(chain id, contract addresses, block number, block time, health ping), :class:`EventLog` the
event index the
:class:`~vitalchain.ledger.watcher.ChainWatcher` follows, and :class:`TransactionLedger` the
low-level sending the :class:`~vitalchain.ledger.outbox.ChainOutbox` is built on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature
from vitalchain.errors import VitalchainError
from vitalchain.ledger.events import Event

if TYPE_CHECKING:
    from vitalchain.ledger.ledger import Anchor, Consent, Device, Group, Ledger, TxResult

__all__ = [
    "AlertRegistry",
    "AlertRegistryView",
    "AnchorLog",
    "AnchorLogView",
    "ChainBasics",
    "ConsentChain",
    "ConsentRegistry",
    "ConsentRegistryView",
    "EventLog",
    "KeyDirectory",
    "KeyDirectoryView",
    "TransactionLedger",
    "TrustGroups",
    "TrustGroupsView",
]


class ChainBasics(Protocol):
    """The chain itself: which one, where the contracts are, how far it is, what time its
    latest block says, whether it answers."""

    @property
    def chain_id(self) -> int: ...

    def address_of(self, contract: str) -> str: ...

    def block_number(self) -> int: ...

    def timestamp(self) -> int:
        """The latest block's time: consent expiry is judged by it, not by a local clock."""
        ...

    def ping(self, timeout: float) -> int: ...


class EventLog(Protocol):
    """The contracts' events in chain order (:class:`~vitalchain.ledger.events.EventIndex`)."""

    def query(self, name: str, **where: Any) -> list[Event]: ...

    def all(self) -> Iterable[Event]: ...

    def since(self, cursor: int) -> tuple[list[Event], int]: ...


class TrustGroupsView(Protocol):
    def group(self, group_id: int) -> Group | None: ...

    def device(self, address: str) -> Device: ...

    def is_active_device(self, address: str) -> bool: ...

    def device_public_key(self, address: str) -> PublicKey: ...

    def object_id_taken(self, object_id: int) -> bool: ...

    def devices_of(self, group_id: int, offset: int = 0, limit: int = 10_000) -> list[str]: ...


class TrustGroups(TrustGroupsView, Protocol):
    """Groups, device tokens and association, revocation, master rotation (paper 002)."""

    def create_group(
        self, master: PrivateKey, group_id: int, master_object_id: int
    ) -> TxResult: ...

    def issue_token(
        self, master: PrivateKey, group_id: int, object_id: int, device: str
    ) -> Signature: ...

    def sign_association(
        self, device: PrivateKey, group_id: int, object_id: int, token: Signature
    ) -> Signature: ...

    def associate(
        self,
        submitter: PrivateKey,
        group_id: int,
        object_id: int,
        device_key: PublicKey,
        token: Signature,
        request: Signature,
    ) -> TxResult: ...

    def revoke_device(self, master: PrivateKey, group_id: int, device: str) -> TxResult: ...

    def rotate_master(
        self, master: PrivateKey, group_id: int, new_master: PrivateKey
    ) -> TxResult: ...


class KeyDirectoryView(Protocol):
    def public_key_of(self, address: str) -> PublicKey: ...

    def has_key(self, address: str) -> bool: ...


class KeyDirectory(KeyDirectoryView, Protocol):
    def publish_key(self, key: PrivateKey) -> TxResult: ...


class ConsentRegistryView(Protocol):
    def is_provider(self, address: str) -> bool: ...

    def has_access(self, patient: str, provider: str, scope: int) -> bool: ...

    def consent_of(self, patient: str, provider: str) -> Consent: ...

    def providers_of(self, patient: str) -> list[str]: ...


class ConsentRegistry(ConsentRegistryView, Protocol):
    def register_provider(self, admin: PrivateKey, provider: str) -> TxResult: ...

    def request_access(self, provider: PrivateKey, patient: str, scope: int) -> TxResult: ...

    def grant(
        self, patient: PrivateKey, provider: str, scope: int, expires_at: int
    ) -> TxResult: ...

    def deny(self, patient: PrivateKey, provider: str) -> TxResult: ...

    def revoke(self, patient: PrivateKey, provider: str) -> TxResult: ...

    def break_glass(
        self, provider: PrivateKey, patient: str, scope: int, reason_code: int, reason: bytes
    ) -> TxResult: ...


class ConsentChain(ConsentRegistryView, KeyDirectoryView, ChainBasics, Protocol):
    """What :class:`~vitalchain.ledger.consent.ConsentView` reads: consents, keys, chain time."""


class AnchorLogView(Protocol):
    def latest_anchor(self, group_id: int) -> Anchor | None: ...

    def root_at(self, group_id: int, tree_size: int) -> bytes | None: ...

    def anchor_history(self, group_id: int) -> bytes: ...

    def anchors(self, group_id: int) -> list[Anchor]: ...


class AnchorLog(AnchorLogView, Protocol):
    def anchor(
        self, master: PrivateKey, group_id: int, root: bytes, tree_size: int, first_block: int
    ) -> TxResult: ...


class AlertRegistryView(Protocol):
    def threshold_of(self, patient: str, vital: int) -> tuple[int, int] | None: ...

    def evaluate(self, patient: str, vital: int, value: int) -> int: ...

    def key_image_used(self, key_image: bytes) -> bool: ...

    def alert_count(self, group_id: int) -> int: ...


class AlertRegistry(AlertRegistryView, Protocol):
    def set_threshold(
        self, sender: PrivateKey, patient: str, vital: int, low: int, high: int
    ) -> TxResult: ...

    def record_alert(
        self,
        master: PrivateKey,
        group_id: int,
        key_image: bytes,
        ciphertext_hash: bytes,
        locator: bytes,
    ) -> TxResult: ...


class TransactionLedger(Protocol):
    """Encode, simulate, sign, broadcast and follow raw transactions, sharing the ledger's
    nonce bookkeeping: the durable outbox's way to the chain."""

    @property
    def chain_id(self) -> int: ...

    @property
    def nonce_lock(self) -> threading.RLock: ...

    def has_contract(self, contract: str) -> bool: ...

    def calldata(self, contract: str, function: str, *args: Any) -> bytes: ...

    def simulate(
        self, sender: str, contract: str, function: str, *args: Any, calldata: bytes | None = None
    ) -> None: ...

    def sign_call(
        self,
        sender: PrivateKey,
        nonce: int,
        contract: str,
        function: str,
        *args: Any,
        calldata: bytes | None = None,
    ) -> tuple[bytes, bytes]: ...

    def revert_error(
        self, sender: str, contract: str, function: str, args: Any, receipt: Any
    ) -> VitalchainError: ...

    def next_nonce(self, address: str) -> int: ...

    def use_nonce(self, address: str, nonce: int, *, persisted: bool = False) -> None: ...

    def release_nonce(self, address: str, nonce: int) -> None: ...

    def sign_filler(self, sender: PrivateKey, nonce: int) -> bytes: ...

    def has_transaction(self, tx_hash: bytes) -> bool: ...

    def broadcast(self, raw: bytes) -> bytes: ...

    def receipt(self, tx_hash: bytes) -> Any | None: ...

    def receipts(self, tx_hashes: list[bytes]) -> list[Any | None]: ...

    def transaction_count(self, address: str, block: str = "latest") -> int: ...


if TYPE_CHECKING:

    def _ledger_is_every_port(ledger: Ledger) -> None:
        """Never called: mypy checks here that the one ledger object fits every port."""
        trust_groups: TrustGroups = ledger
        keys: KeyDirectory = ledger
        consents: ConsentRegistry = ledger
        anchors: AnchorLog = ledger
        alerts: AlertRegistry = ledger
        clock: ChainBasics = ledger
        consent_chain: ConsentChain = ledger
        sender: TransactionLedger = ledger
        events: EventLog = ledger.events
        del trust_groups, keys, consents, anchors, alerts, clock, consent_chain, sender, events
