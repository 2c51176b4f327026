"""The one ledger interface the rest of vitalchain uses, over any backend.

Every state-changing method takes the acting key first: gateways, patients and providers
each sign their own transactions with their own Ethereum account.  A refused call raises a
:class:`~vitalchain.ledger.errors.ContractError` decoded from the contract's custom error;
nothing is sent when the simulation already fails.

A transaction holds the ledger's lock only while its nonce is taken and it is signed and
sent, never while its receipt is awaited: one slow block no longer stalls every other sender
of the process.  The gateway master's own writes go through the durable
:class:`~vitalchain.ledger.outbox.ChainOutbox`, which shares this nonce bookkeeping (the
low-level methods under "for the outbox" below).

The outbox's hot path is lean, because its client-side CPU runs on the gateway's GIL: the
calldata is encoded once per entry from the ABI, signed with eth_account, and on a JSON-RPC
node (:attr:`ChainBackend.json_rpc`) sent, simulated and polled with plain requests over one
kept-alive session rather than through web3's middleware; the base fee is read at most once
per :data:`FEE_TTL_S` (not a ``get_block`` per transaction; a refused broadcast forgets it);
receipts of every transaction in flight come back from one batch (:meth:`Ledger.receipts`).
The embedded chain keeps web3 for all of it.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TimeExhausted, TransactionNotFound
from web3.types import TxParams

from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256
from vitalchain.errors import VitalchainError
from vitalchain.ledger import eip712
from vitalchain.ledger._artifacts import CONTRACTS, artifact
from vitalchain.ledger.backends import ChainBackend, EmbeddedBackend, RpcError
from vitalchain.ledger.errors import (
    ERROR_CLASSES,
    ChainUnavailable,
    LedgerError,
    TransactionFailed,
)
from vitalchain.ledger.events import ANCHORED, EventIndex
from vitalchain.vitals import Vital, from_fixed

__all__ = [
    "Anchor",
    "Consent",
    "ConsentStatus",
    "Deployment",
    "Device",
    "DeviceStatus",
    "Group",
    "Ledger",
    "TxResult",
    "history_hash",
]

FUNDING_WEI = 10 * 10**18
GAS_CEILING = 1_000_000  # well above any vitalchain call (associate ~135k)
_TIP_WEI = 10**9
# How long a base fee read is reused.  Transactions offer twice the base fee, and a base fee
# rises at most 12.5 % a block, so a second-old read stays ample on any chain that does not
# mine several full blocks a second; a broadcast refused for its fee drops it at once.
FEE_TTL_S = 1.0


class DeviceStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    REVOKED = 2


class ConsentStatus(IntEnum):
    NONE = 0
    REQUESTED = 1
    GRANTED = 2
    DENIED = 3
    REVOKED = 4


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the contracts live; saved as JSON so other processes can attach."""

    chain_id: int
    addresses: dict[str, str]
    block: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        data = json.loads(text)
        missing = set(CONTRACTS) - set(data.get("addresses", {}))
        if missing:
            raise LedgerError(f"deployment file lacks {sorted(missing)}", code="bad_deployment")
        return cls(int(data["chain_id"]), dict(data["addresses"]), int(data["block"]))

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> Deployment:
        return cls.from_json(path.read_text())


@dataclass(frozen=True, slots=True)
class TxResult:
    tx_hash: bytes
    block_number: int
    gas_used: int


@dataclass(frozen=True, slots=True)
class Group:
    group_id: int
    master: str
    master_object_id: int
    device_count: int
    master_public_key: PublicKey


@dataclass(frozen=True, slots=True)
class Device:
    address: str
    group_id: int
    object_id: int
    status: DeviceStatus


@dataclass(frozen=True, slots=True)
class Consent:
    status: ConsentStatus
    scope: int
    expires_at: int
    break_glass_until: int


@dataclass(frozen=True, slots=True)
class Anchor:
    root: bytes
    tree_size: int
    anchor_count: int
    timestamp: int


class _ErrorDecoder:
    """Custom-error selector → (contract, name, ABI inputs), over every shipped ABI."""

    def __init__(self) -> None:
        self._by_selector: dict[bytes, tuple[str, str, list[dict[str, Any]]]] = {}
        for contract in CONTRACTS:
            for entry in artifact(contract)["abi"]:
                if entry.get("type") != "error":
                    continue
                sig = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                owner = entry["name"].split("__")[0] if "__" in entry["name"] else contract
                self._by_selector.setdefault(
                    keccak256(sig.encode())[:4], (owner, entry["name"], entry["inputs"])
                )

    def decode(self, data: bytes, called: str) -> LedgerError:
        entry = self._by_selector.get(data[:4])
        if entry is None:
            return TransactionFailed(f"{called}: reverted ({data.hex() or 'no reason'})")
        owner, name, inputs = entry
        if owner not in ERROR_CLASSES:
            owner = called
        values = abi_decode([i["type"] for i in inputs], data[4:])
        fields = {
            i["name"]: (Web3.to_checksum_address(v) if i["type"] == "address" else v)
            for i, v in zip(inputs, values, strict=True)
        }
        reason = name.split("__", 1)[1] if "__" in name else name
        return ERROR_CLASSES[owner](owner, reason, fields)


_DECODER: _ErrorDecoder | None = None


class Ledger:
    """Domain operations on the vitalchain contracts; thread-safe for senders."""

    def __init__(
        self,
        backend: ChainBackend,
        deployment: Deployment,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (monotonic seconds) ages the cached base fee."""
        global _DECODER  # built once, read-only afterwards
        self.backend = backend
        self._rpc = backend.json_rpc
        self._clock = clock
        self._fee_cache: tuple[float, dict[str, int]] | None = None  # (read at, fees)
        self._shapes: dict[tuple[str, str], tuple[bytes, list[str]] | None] = {}
        self.w3 = backend.w3
        self.deployment = deployment
        if self.w3.eth.chain_id != deployment.chain_id:
            raise LedgerError(
                f"node is chain {self.w3.eth.chain_id}, deployment is {deployment.chain_id}",
                code="wrong_chain",
            )
        self._contracts: dict[str, Contract] = {
            name: self.w3.eth.contract(
                address=Web3.to_checksum_address(deployment.addresses[name]),
                abi=artifact(name)["abi"],
            )
            for name in CONTRACTS
        }
        self.domain = eip712.Domain(deployment.chain_id, self._contracts["TrustGroups"].address)
        self.events = EventIndex(self.w3, self._contracts, deployment.block)
        # Nonce allocation and sending only (never a receipt wait).  ``_nonces`` is the next
        # nonce per account as this process counts it; ``_floors`` the lowest one it may still
        # hand out, raised by the outbox for nonces it has persisted (so that a re-read of the
        # chain's count, which may not know them yet, never gives one out twice).
        self._lock = threading.RLock()
        self._nonces: dict[str, int] = {}
        self._floors: dict[str, int] = {}
        _DECODER = _DECODER or _ErrorDecoder()
        self._decoder = _DECODER

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def deploy(cls, backend: ChainBackend, deployer: PrivateKey) -> Ledger:
        """Deploy all contracts from ``deployer`` (who becomes the consent admin)."""
        w3 = backend.w3
        chain_id = w3.eth.chain_id
        boot = _Sender(w3=w3, chain_id=chain_id)
        if (
            backend.funder is not None
            and w3.eth.get_balance(Web3.to_checksum_address(deployer.address)) == 0
        ):
            boot.transfer(backend.funder, deployer.address, FUNDING_WEI)
        addresses: dict[str, str] = {}
        first_block = w3.eth.block_number + 1
        for name in CONTRACTS:
            art = artifact(name)
            args: list[str] = []
            if name == "AnchorLog":
                args = [addresses["TrustGroups"]]
            elif name == "AlertRegistry":
                args = [addresses["TrustGroups"], addresses["ConsentRegistry"]]
            factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
            receipt = boot.send(deployer, factory.constructor(*args), estimate=True)
            addresses[name] = str(receipt["contractAddress"])
        return cls(backend, Deployment(chain_id, addresses, first_block))

    @classmethod
    def embedded(cls) -> Ledger:
        """A fresh in-process chain with the contracts deployed: the default."""
        backend = EmbeddedBackend()
        return cls.deploy(backend, PrivateKey.generate())

    # -- chain ------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    def address_of(self, contract: str) -> str:
        return str(self._contracts[contract].address)

    def has_contract(self, contract: str) -> bool:
        return contract in self._contracts

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def ping(self, timeout: float) -> int:
        """The latest block number within ``timeout`` seconds, else :class:`ChainUnavailable`
        (health probes: a hung node must be reported down quickly, not after a long timeout)."""
        return self.backend.ping(timeout)

    def timestamp(self, block: int | Literal["latest"] = "latest") -> int:
        """The time of ``block`` (the latest by default), in Unix seconds."""
        return int(self.w3.eth.get_block(block)["timestamp"])

    def advance_time(self, seconds: int) -> None:
        self.backend.advance_time(seconds)

    def fund(self, address: str, wei: int = FUNDING_WEI) -> None:
        """Give ``address`` ether from the backend's dev account (no-op without one)."""
        if self.backend.funder is None:
            return
        with self._lock:
            tx_hash = self._sender().transfer_hash(self.backend.funder, address, wei)
        self._wait(tx_hash, "transfer")

    def _sender(self) -> _Sender:
        return _Sender(
            w3=self.w3,
            chain_id=self.chain_id,
            nonces=self._nonces,
            floors=self._floors,
            fees=self.fees,
        )

    def fees(self) -> dict[str, int]:
        """``maxFeePerGas`` and ``maxPriorityFeePerGas`` for a transaction now: the base fee is
        read at most once per :data:`FEE_TTL_S` (see the module docstring)."""
        now = self._clock()
        cached = self._fee_cache
        if cached is not None and now - cached[0] < FEE_TTL_S:
            return cached[1]
        base = self._read_base_fee()
        tip = _TIP_WEI if base else 0
        fees = {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
        self._fee_cache = (now, fees)
        return fees

    def forget_fees(self) -> None:
        """Read the base fee afresh next time (a broadcast was refused: maybe for its fee)."""
        self._fee_cache = None

    def _read_base_fee(self) -> int:
        if self._rpc is not None:
            block = self._rpc.call("eth_getBlockByNumber", ["latest", False])
            return int(block.get("baseFeePerGas") or "0x0", 16)
        return int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))

    def _send(self, sender: PrivateKey, contract: str, function: str, *args: Any) -> TxResult:
        """Simulate, then (under the lock: nonce, sign, send) send, then wait without the lock.

        A refusal found by the simulation raises before anything is sent.  A transaction that
        passed it but reverted in its block (another one changed the state in between) is
        decoded by running the call again at that block, so it raises the same typed error.
        """
        fn = self._contracts[contract].functions[function](*args)
        try:
            self._sender().simulate(sender, fn)
        except Exception as exc:
            self._refusal(exc, contract)
            raise
        with self._lock:
            try:
                tx_hash = self._sender().dispatch(sender, fn)
            except Exception as exc:
                self._refusal(exc, contract)
                raise
        receipt = self._wait(tx_hash, f"{contract}.{function}")
        if receipt["status"] != 1:
            raise self.revert_error(sender.address, contract, function, args, receipt)
        return TxResult(
            bytes(receipt["transactionHash"]), receipt["blockNumber"], receipt["gasUsed"]
        )

    def _refusal(self, exc: Exception, contract: str) -> None:
        """Raise ``exc`` as the typed error of a decodable revert; else return (the caller
        re-raises ``exc`` as it is)."""
        data = self.backend.revert_data(exc)
        if data is not None:
            raise self._decoder.decode(data, contract) from None

    def _wait(self, tx_hash: bytes, what: str) -> Any:
        try:
            return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)  # type: ignore[arg-type]
        except TimeExhausted as exc:  # sent, but no block took it in time: a stalled chain
            raise ChainUnavailable(f"{what}: no receipt in time") from exc

    # -- for the outbox (ledger/outbox.py): one step of a transaction at a time -------------------

    def calldata(self, contract: str, function: str, *args: Any) -> bytes:
        """The ABI-encoded call (built once per outbox entry, then simulated and signed):
        selector and input types looked up once per function, then eth_abi alone; web3's
        encoder (which also normalises e.g. hex strings) if that refuses the arguments."""
        shape = self._shapes.get((contract, function))
        if shape is None:
            shape = self._shapes[(contract, function)] = _shape(contract, function)
        if shape:
            selector, types = shape
            try:
                return selector + abi_encode(types, list(args))
            except Exception:  # noqa: S110 - web3's encoder below words the error
                pass
        data = self._contracts[contract].encode_abi(function, args=list(args))
        return bytes.fromhex(data[2:])

    def simulate(
        self, sender: str, contract: str, function: str, *args: Any, calldata: bytes | None = None
    ) -> None:
        """``eth_call`` the transaction from ``sender`` on the latest state: a refusal raises
        its typed error, an unreachable node :class:`ChainUnavailable`."""
        if self._rpc is not None:
            data = calldata if calldata is not None else self.calldata(contract, function, *args)
            call = {"from": sender, "to": self.address_of(contract), "data": "0x" + data.hex()}
            try:
                self._rpc.call("eth_call", [call, "latest"])
            except RpcError as exc:
                _raise_if_unfunded(exc, sender)
                payload = exc.revert_data()
                if payload is not None:
                    raise self._decoder.decode(payload, contract) from None
                raise
            return
        fn = self._contracts[contract].functions[function](*args)
        try:
            fn.call({"from": sender})
        except Exception as exc:
            _raise_if_unfunded(exc, sender)
            self._refusal(exc, contract)
            raise

    def revert_error(
        self, sender: str, contract: str, function: str, args: Any, receipt: Any
    ) -> VitalchainError:
        """Why a mined transaction reverted (status 0): its call run again at its block gives
        the contract's typed error; a call that passes there (out of gas, a state that changed
        within the block) gives :class:`TransactionFailed`.  :class:`ChainUnavailable` raises."""
        block = int(receipt["blockNumber"])
        fn = self._contracts[contract].functions[function](*args)
        try:
            fn.call({"from": sender}, block_identifier=block)
        except ChainUnavailable:
            raise
        except Exception as exc:
            data = self.backend.revert_data(exc)
            if data is not None:
                return self._decoder.decode(data, contract)
        return TransactionFailed(f"{contract}.{function} reverted in block {block}")

    def decode_revert(self, data: bytes, contract: str) -> LedgerError:
        """A revert payload as its typed error (an outbox entry's refusal, read back)."""
        return self._decoder.decode(data, contract)

    def sign_call(
        self,
        sender: PrivateKey,
        nonce: int,
        contract: str,
        function: str,
        *args: Any,
        calldata: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """The raw signed transaction and its hash, at ``nonce``, with today's fees (the
        calldata encoded from ``args`` unless given)."""
        data = calldata if calldata is not None else self.calldata(contract, function, *args)
        to = bytes.fromhex(self.address_of(contract)[2:])
        fees = self.fees()
        return sign_dynamic_fee(
            sender, self.chain_id, nonce, fees["maxPriorityFeePerGas"], fees["maxFeePerGas"],
            GAS_CEILING, to, data,
        )  # fmt: skip

    def next_nonce(self, address: str) -> int:
        """The nonce the next transaction of ``address`` takes (hold :meth:`nonce_lock`)."""
        return self._sender().next_nonce(address)

    def use_nonce(self, address: str, nonce: int, *, persisted: bool = False) -> None:
        """``nonce`` is taken; ``persisted``: by an outbox entry, never to be given out again."""
        with self._lock:
            self._nonces[address] = max(self._nonces.get(address, 0), nonce + 1)
            if persisted:
                self._floors[address] = max(self._floors.get(address, 0), nonce + 1)

    def release_nonce(self, address: str, nonce: int) -> None:
        """The node refused the transaction at ``nonce`` (the last one taken, under the lock):
        it may be given out again, and the count is read from the chain next time."""
        with self._lock:
            if self._floors.get(address) == nonce + 1:
                self._floors[address] = nonce
            self._nonces.pop(address, None)

    @property
    def nonce_lock(self) -> threading.RLock:
        """Held while a nonce is taken and its transaction signed and sent, nothing longer."""
        return self._lock

    def sign_filler(self, sender: PrivateKey, nonce: int) -> bytes:
        """An empty transfer to ``sender`` itself at ``nonce``: fills a nonce nobody holds."""
        tx = {"to": sender.address, "value": 0, "gas": 21_000}
        return self._sender()._signed(sender, tx, nonce)[0]

    def has_transaction(self, tx_hash: bytes) -> bool:
        """Whether the node knows the transaction (in its pool or mined)."""
        try:
            self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def broadcast(self, raw: bytes) -> bytes:
        """``eth_sendRawTransaction``; the node's refusal raises as the node words it."""
        try:
            if self._rpc is not None:
                return bytes.fromhex(
                    self._rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])[2:]
                )
            return bytes(self.w3.eth.send_raw_transaction(raw))
        except ChainUnavailable:
            raise
        except Exception:
            self.forget_fees()  # perhaps refused for a fee below the base fee
            raise

    def receipt(self, tx_hash: bytes) -> Any | None:
        """The receipt if the transaction is mined, else None (never waits).  ``status``,
        ``blockNumber`` and ``gasUsed`` are ints on every backend."""
        if self._rpc is not None:
            return _receipt(self._rpc.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()]))
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    def receipts(self, tx_hashes: list[bytes]) -> list[Any | None]:
        """:meth:`receipt` of each hash, on a JSON-RPC node in one batch request (the outbox
        polls every transaction in flight at once); the embedded chain asks one by one."""
        if self._rpc is None:
            return [self.receipt(h) for h in tx_hashes]
        calls = [("eth_getTransactionReceipt", ["0x" + h.hex()]) for h in tx_hashes]
        answers = self._rpc.batch(calls)
        for answer in answers:
            if isinstance(answer, RpcError):
                raise answer
        return [_receipt(a) for a in answers]

    def transaction_count(self, address: str, block: str = "latest") -> int:
        return int(self.w3.eth.get_transaction_count(address, block))  # type: ignore[arg-type]

    @functools.cached_property
    def _view_params(self) -> TxParams:
        """The sender web3 would guess for a view, asked once rather than once per call.

        Without an explicit ``from`` web3 asks the node for its accounts on every call (a third
        of an embedded view's time).  No view of ours reads ``msg.sender``.
        """
        accounts = self.w3.eth.accounts
        return {"from": accounts[0]} if accounts else {}

    def _call(self, contract: str, function: str, *args: Any) -> Any:
        try:
            return self._contracts[contract].functions[function](*args).call(self._view_params)
        except Exception as exc:
            data = self.backend.revert_data(exc)
            if data is None:
                raise
            raise self._decoder.decode(data, contract) from None

    # -- trust groups (paper 002) ------------------------------------------------------------------

    def create_group(self, master: PrivateKey, group_id: int, master_object_id: int) -> TxResult:
        return self._send(
            master, "TrustGroups", "createGroup", group_id, master_object_id, master.public_key.xy
        )

    def issue_token(
        self, master: PrivateKey, group_id: int, object_id: int, device: str
    ) -> Signature:
        """The master's signature over the typed keccak(groupID ‖ objectID ‖ address)."""
        return master.sign_digest(eip712.token_digest(self.domain, group_id, object_id, device))

    def sign_association(
        self, device: PrivateKey, group_id: int, object_id: int, token: Signature
    ) -> Signature:
        """The device's own signature over its association request (binds the token)."""
        digest = eip712.request_digest(
            self.domain, group_id, object_id, device.address, token.to_rsv()
        )
        return device.sign_digest(digest)

    def associate(
        self,
        submitter: PrivateKey,
        group_id: int,
        object_id: int,
        device_key: PublicKey,
        token: Signature,
        request: Signature,
    ) -> TxResult:
        return self._send(
            submitter,
            "TrustGroups",
            "associate",
            group_id,
            object_id,
            device_key.xy,
            token.to_rsv(),
            request.to_rsv(),
        )

    def revoke_device(self, master: PrivateKey, group_id: int, device: str) -> TxResult:
        return self._send(master, "TrustGroups", "revokeDevice", group_id, device)

    def rotate_master(self, master: PrivateKey, group_id: int, new_master: PrivateKey) -> TxResult:
        proof = new_master.sign_digest(
            eip712.rotation_digest(self.domain, group_id, new_master.address)
        )
        return self._send(
            master,
            "TrustGroups",
            "rotateMaster",
            group_id,
            new_master.public_key.xy,
            proof.to_rsv(),
        )

    def group(self, group_id: int) -> Group | None:
        master, oid, count, pub = self._call("TrustGroups", "groupOf", group_id)
        if int(master, 16) == 0:
            return None
        return Group(group_id, master, oid, count, PublicKey.from_bytes(bytes(pub)))

    def device(self, address: str) -> Device:
        gid, oid, status = self._call("TrustGroups", "deviceOf", address)
        return Device(address, gid, oid, DeviceStatus(status))

    def is_active_device(self, address: str) -> bool:
        return bool(self._call("TrustGroups", "isActiveDevice", address))

    def device_public_key(self, address: str) -> PublicKey:
        return PublicKey.from_bytes(bytes(self._call("TrustGroups", "devicePublicKey", address)))

    def object_id_taken(self, object_id: int) -> bool:
        return bool(self._call("TrustGroups", "objectIdTaken", object_id))

    def devices_of(self, group_id: int, offset: int = 0, limit: int = 10_000) -> list[str]:
        return list(self._call("TrustGroups", "devicesOf", group_id, offset, limit))

    # -- key directory -----------------------------------------------------------------------------

    def publish_key(self, key: PrivateKey) -> TxResult:
        return self._send(key, "KeyDirectory", "publishKey", key.public_key.xy)

    def public_key_of(self, address: str) -> PublicKey:
        return PublicKey.from_bytes(bytes(self._call("KeyDirectory", "publicKeyOf", address)))

    def has_key(self, address: str) -> bool:
        return bool(self._call("KeyDirectory", "hasKey", address))

    # -- consent (paper 000) -----------------------------------------------------------------------

    def register_provider(self, admin: PrivateKey, provider: str) -> TxResult:
        return self._send(admin, "ConsentRegistry", "registerProvider", provider)

    def is_provider(self, address: str) -> bool:
        return bool(self._call("ConsentRegistry", "isProvider", address))

    def request_access(self, provider: PrivateKey, patient: str, scope: int) -> TxResult:
        return self._send(provider, "ConsentRegistry", "requestAccess", patient, scope)

    def grant(self, patient: PrivateKey, provider: str, scope: int, expires_at: int) -> TxResult:
        return self._send(patient, "ConsentRegistry", "grant", provider, scope, expires_at)

    def deny(self, patient: PrivateKey, provider: str) -> TxResult:
        return self._send(patient, "ConsentRegistry", "deny", provider)

    def revoke(self, patient: PrivateKey, provider: str) -> TxResult:
        return self._send(patient, "ConsentRegistry", "revoke", provider)

    def break_glass(
        self, provider: PrivateKey, patient: str, scope: int, reason_code: int, reason: bytes
    ) -> TxResult:
        """Emergency access, recorded on chain with a reason code and the reason's hash."""
        return self._send(
            provider,
            "ConsentRegistry",
            "breakGlass",
            patient,
            scope,
            reason_code,
            keccak256(reason),
        )

    def has_access(self, patient: str, provider: str, scope: int) -> bool:
        return bool(self._call("ConsentRegistry", "hasAccess", patient, provider, scope))

    def consent_of(self, patient: str, provider: str) -> Consent:
        status, scope, expires, glass = self._call(
            "ConsentRegistry", "consentOf", patient, provider
        )
        return Consent(ConsentStatus(status), scope, expires, glass)

    def providers_of(self, patient: str) -> list[str]:
        return list(self._call("ConsentRegistry", "providersOf", patient))

    # -- anchors -----------------------------------------------------------------------------------

    def anchor(
        self, master: PrivateKey, group_id: int, root: bytes, tree_size: int, first_block: int
    ) -> TxResult:
        return self._send(
            master, "AnchorLog", "anchor", group_id, root, tree_size, first_block, tree_size - 1
        )

    def latest_anchor(self, group_id: int) -> Anchor | None:
        root, size, count, ts = self._call("AnchorLog", "latestAnchor", group_id)
        return None if count == 0 else Anchor(bytes(root), size, count, ts)

    def root_at(self, group_id: int, tree_size: int) -> bytes | None:
        """The root anchored for exactly ``tree_size`` blocks, from the ``Anchored`` events."""
        for anchor in self.anchors(group_id):
            if anchor.tree_size == tree_size:
                return anchor.root
        return None

    def anchor_history(self, group_id: int) -> bytes:
        """The contract's hash chain over every anchor of the group (docs/spec/anchor.md)."""
        return bytes(self._call("AnchorLog", "anchorHistory", group_id))

    def anchors(self, group_id: int) -> list[Anchor]:
        """Every anchor of ``group_id`` in order, from the event index."""
        return [
            Anchor(bytes(e.args["root"]), e.args["treeSize"], e.args["index"] + 1, e.block_number)
            for e in self.events.query(ANCHORED.name, groupId=group_id)
        ]

    # -- alert policy and log ----------------------------------------------------------------------

    def set_threshold(
        self, sender: PrivateKey, patient: str, vital: int, low: int, high: int
    ) -> TxResult:
        return self._send(sender, "AlertRegistry", "setThreshold", patient, vital, low, high)

    def threshold_of(self, patient: str, vital: int) -> tuple[int, int] | None:
        low, high, is_set = self._call("AlertRegistry", "thresholdOf", patient, vital)
        return (low, high) if is_set else None

    def thresholds(self, patient: str, vitals: Iterable[Vital]) -> dict[Vital, tuple[float, float]]:
        """The patient's on-chain (low, high) of each of ``vitals`` that has one, in the
        vital's unit (what a chart's band and FHIR's referenceRange show); none is invented."""
        found: dict[Vital, tuple[float, float]] = {}
        for vital in sorted(set(vitals)):
            fixed = self.threshold_of(patient, int(vital))
            if fixed is not None:
                found[vital] = (from_fixed(fixed[0]), from_fixed(fixed[1]))
        return found

    def evaluate(self, patient: str, vital: int, value: int) -> int:
        return int(self._call("AlertRegistry", "evaluate", patient, vital, value))

    def record_alert(
        self,
        master: PrivateKey,
        group_id: int,
        key_image: bytes,
        ciphertext_hash: bytes,
        locator: bytes,
    ) -> TxResult:
        return self._send(
            master, "AlertRegistry", "recordAlert", group_id, key_image, ciphertext_hash, locator
        )

    def key_image_used(self, key_image: bytes) -> bool:
        return bool(self._call("AlertRegistry", "keyImageUsed", key_image))

    def alert_count(self, group_id: int) -> int:
        return int(self._call("AlertRegistry", "alertCount", group_id))


def _raise_if_unfunded(exc: Exception, address: str) -> None:
    """Nodes word this differently: py-evm "cannot afford", geth/anvil "insufficient funds"."""
    text = str(exc).lower()
    if "afford" in text or "insufficient funds" in text:
        raise LedgerError(
            f"{address} has too little ether to pay for gas", code="insufficient_funds"
        ) from None


def sign_dynamic_fee(
    sender: PrivateKey,
    chain_id: int,
    nonce: int,
    tip: int,
    max_fee: int,
    gas: int,
    to: bytes,
    data: bytes,
) -> tuple[bytes, bytes]:
    """An EIP-1559 (type 2) call without value or access list, signed: raw bytes and hash.

    Byte for byte what ``eth_account.Account.sign_transaction`` makes of the same fields (a
    unit test holds it to that), at a tenth of its CPU: it validates and builds typed
    transaction objects for every call, which was ~0.5 ms of each outbox transaction.
    """
    fields: list[Any] = [chain_id, nonce, tip, max_fee, gas, to, 0, data, []]
    signature = sender.sign_digest(keccak256(b"\x02" + rlp.encode(fields)))
    r = int.from_bytes(signature.compact[:32], "big")
    s = int.from_bytes(signature.compact[32:], "big")
    raw = b"\x02" + rlp.encode([*fields, signature.recovery_id, r, s])
    return raw, keccak256(raw)


def _abi_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


def _shape(contract: str, function: str) -> tuple[bytes, list[str]] | None:
    """(selector, input types) of a function that is not overloaded; None otherwise."""
    entries = [
        e
        for e in artifact(contract)["abi"]
        if e.get("type") == "function" and e["name"] == function
    ]
    if len(entries) != 1:
        return None
    types = [_abi_type(i) for i in entries[0]["inputs"]]
    return keccak256(f"{function}({','.join(types)})".encode())[:4], types


def _receipt(raw: Any) -> dict[str, Any] | None:
    """A JSON-RPC receipt (hex strings) with the fields the outbox reads as ints."""
    if raw is None:
        return None
    receipt = dict(raw)
    for name in ("status", "blockNumber", "gasUsed"):
        value = receipt.get(name)
        if isinstance(value, str):
            receipt[name] = int(value, 16)
    return receipt


def history_hash(anchors: list[Anchor]) -> bytes:
    """Recompute ``anchorHistory`` from the events: h' = keccak256(h ‖ root ‖ uint64 size)."""
    h = bytes(32)
    for anchor in anchors:
        h = keccak256(h + anchor.root + anchor.tree_size.to_bytes(8, "big"))
    return h


class _Sender:
    """Signs and sends one transaction at a time: nonce, fees, gas and receipt."""

    def __init__(
        self,
        *,
        w3: Web3,
        chain_id: int,
        nonces: dict[str, int] | None = None,
        floors: dict[str, int] | None = None,
        fees: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.nonces = nonces if nonces is not None else {}
        self.floors = floors if floors is not None else {}
        self._fee_source = fees

    def _fees(self) -> dict[str, int]:
        """The ledger's cached fees, else (deployment) a fresh read of the base fee."""
        if self._fee_source is not None:
            return self._fee_source()
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip = _TIP_WEI if base else 0
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def next_nonce(self, address: str) -> int:
        """This process's count, else the chain's (pending) count; never below the floor."""
        if address not in self.nonces:
            self.nonces[address] = self.w3.eth.get_transaction_count(address, "pending")  # type: ignore[arg-type]
        return max(self.nonces[address], self.floors.get(address, 0))

    def _signed(self, sender: PrivateKey, tx: dict[str, Any], nonce: int) -> tuple[bytes, bytes]:
        tx |= {"nonce": nonce, "chainId": self.chain_id, **self._fees()}
        signed = Account.sign_transaction(tx, sender.secret)
        return bytes(signed.raw_transaction), bytes(signed.hash)

    def _submit(self, sender: PrivateKey, tx: dict[str, Any]) -> bytes:
        """Sign at the next nonce and send; the transaction's hash (call under the lock)."""
        address = sender.address
        nonce = self.next_nonce(address)
        raw, _ = self._signed(sender, tx, nonce)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            self.nonces.pop(address, None)
            _raise_if_unfunded(exc, address)
            raise
        self.nonces[address] = nonce + 1
        return bytes(tx_hash)

    def simulate(self, sender: PrivateKey, fn: Any, *, estimate: bool = False) -> int:
        """One ``eth_call`` (a refusal raises here, nothing is sent); the gas to send with.

        One ``eth_call`` is cheaper than ``eth_estimateGas`` (a binary search of executions
        on py-evm), so calls go out with a fixed ceiling; only used gas is charged.
        """
        try:
            if estimate:
                return int(fn.estimate_gas({"from": sender.address})) * 5 // 4 + 20_000
            fn.call({"from": sender.address})
            return GAS_CEILING
        except Exception as exc:
            _raise_if_unfunded(exc, sender.address)
            raise

    def _built(self, sender: PrivateKey, fn: Any, gas: int) -> dict[str, Any]:
        fill = {"from": sender.address, "gas": gas, "nonce": 0}
        return dict(fn.build_transaction(fill | {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}))

    def dispatch(self, sender: PrivateKey, fn: Any, *, gas: int = GAS_CEILING) -> bytes:
        """Sign and send an already simulated call; its hash (call under the lock)."""
        return self._submit(sender, self._built(sender, fn, gas))

    def send(self, sender: PrivateKey, fn: Any, *, estimate: bool = False) -> Any:
        """Simulate, sign, send and wait for the receipt (deployment: one sender, in order)."""
        gas = self.simulate(sender, fn, estimate=estimate)
        tx_hash = self.dispatch(sender, fn, gas=gas)
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)  # type: ignore[arg-type]

    def transfer_hash(self, sender: PrivateKey, to: str, wei: int) -> bytes:
        return self._submit(sender, {"to": to, "value": wei, "gas": 21_000})

    def transfer(self, sender: PrivateKey, to: str, wei: int) -> Any:
        tx_hash = self.transfer_hash(sender, to, wei)
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)  # type: ignore[arg-type]
