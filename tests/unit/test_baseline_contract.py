"""BubblesBaseline, the benchmark's Bubbles-of-Trust contract: only active members submit.

The contract (contracts/src/baseline/) is a benchmark baseline, never part of the product's
deployment; its ABI and bytecode live in benchmarks/artifacts/. Each test runs on the embedded
chain and on a real anvil node.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from tests.support.artifacts import ROOT, assert_script_passes, assert_sources_unchanged
from vitalchain.crypto import PrivateKey, keccak256
from vitalchain.device.client import DeviceClient
from vitalchain.ledger import ANVIL_DEV_KEY, EmbeddedBackend, Ledger, RpcBackend
from vitalchain.ledger._artifacts import CONTRACTS
from vitalchain.vitals import Vital

ARTIFACT = ROOT / "benchmarks" / "artifacts" / "BubblesBaseline.json"
NOT_MEMBER = keccak256(b"BubblesBaseline__NotMember(uint64,uint64,address)")[:4]
EMPTY = keccak256(b"BubblesBaseline__EmptyMessage()")[:4]

_ids = itertools.count(7_700_000)


def load_artifact() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ARTIFACT.read_text())
    return data


def transact(w3: Web3, key: PrivateKey, data: str, to: str | None = None) -> Any:
    base = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    tx: dict[str, Any] = {
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(Web3.to_checksum_address(key.address), "pending"),
        "gas": 1_000_000,
        "value": 0,
        "data": data,
        "maxFeePerGas": 2 * base + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    if to is not None:
        tx["to"] = to
    raw = Account.sign_transaction(tx, key.secret).raw_transaction
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw), timeout=60)


@dataclass
class Bubble:
    ledger: Ledger
    baseline: Contract
    group_id: int
    master: PrivateKey
    master_object_id: int
    device: PrivateKey
    object_id: int

    def submit(self, sender: PrivateKey, group_id: int, object_id: int, message: bytes) -> Any:
        data = self.baseline.encode_abi("submit", args=[group_id, object_id, message])
        return transact(self.ledger.w3, sender, data, self.baseline.address)

    def refusal(self, sender: PrivateKey, group_id: int, object_id: int, message: bytes) -> bytes:
        """The revert payload of a simulated submission (nothing is sent)."""
        fn = self.baseline.functions.submit(group_id, object_id, message)
        try:
            fn.call({"from": Web3.to_checksum_address(sender.address)})
        except Exception as exc:
            data = self.ledger.backend.revert_data(exc)
            if data is None:
                raise
            return data
        pytest.fail("the submission was accepted")


def funded(ledger: Ledger) -> PrivateKey:
    key = PrivateKey.generate()
    ledger.fund(key.address)
    return key


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def chain(request: pytest.FixtureRequest) -> Iterator[tuple[Ledger, Contract]]:
    if request.param == "embedded":
        backend: EmbeddedBackend | RpcBackend = EmbeddedBackend()
    else:
        backend = RpcBackend(request.getfixturevalue("anvil_url"), funder=PrivateKey(ANVIL_DEV_KEY))
    ledger = Ledger.deploy(backend, PrivateKey.generate())
    art = load_artifact()
    factory = ledger.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    data = factory.constructor(ledger.address_of("TrustGroups")).data_in_transaction
    receipt = transact(ledger.w3, funded(ledger), data)
    assert receipt["status"] == 1
    yield ledger, ledger.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])
    backend.close()


@pytest.fixture
def bubble(chain: tuple[Ledger, Contract]) -> Bubble:
    """A fresh group with one associated, funded device."""
    ledger, baseline = chain
    master, device = funded(ledger), funded(ledger)
    gid, master_oid, oid = next(_ids), next(_ids), next(_ids)
    ledger.create_group(master, gid, master_oid)
    token = ledger.issue_token(master, gid, oid, device.address)
    request = ledger.sign_association(device, gid, oid, token)
    ledger.associate(master, gid, oid, device.public_key, token, request)
    assert ledger.is_active_device(device.address)
    return Bubble(ledger, baseline, gid, master, master_oid, device, oid)


def device_message(bubble: Bubble) -> bytes:
    """A real data message from the device SDK (signed, encrypted), as the benchmark sends."""
    client = DeviceClient(bubble.device, bubble.object_id)
    client.attach(bytes(16), bytes(32), bubble.group_id)
    return client.prepare([(Vital.HEART_RATE, 72.0)])


def test_active_member_submits_and_the_event_carries_the_ciphertext(bubble: Bubble) -> None:
    message = device_message(bubble)
    receipt = bubble.submit(bubble.device, bubble.group_id, bubble.object_id, message)
    assert receipt["status"] == 1
    (event,) = bubble.baseline.events.DataSubmitted().process_receipt(receipt)
    assert event["address"] == bubble.baseline.address
    assert event["args"]["groupId"] == bubble.group_id
    assert event["args"]["device"] == Web3.to_checksum_address(bubble.device.address)
    assert event["args"]["objectId"] == bubble.object_id
    assert event["args"]["ciphertext"] == message
    assert bubble.baseline.functions.trustGroups().call() == bubble.ledger.address_of("TrustGroups")


def test_a_stranger_is_refused_with_the_custom_error(bubble: Bubble) -> None:
    stranger = funded(bubble.ledger)
    data = bubble.refusal(stranger, bubble.group_id, bubble.object_id, b"\x01" * 300)
    assert data[:4] == NOT_MEMBER
    group, object_id, sender = abi_decode(["uint64", "uint64", "address"], data[4:])
    assert (group, object_id) == (bubble.group_id, bubble.object_id)
    assert Web3.to_checksum_address(sender) == Web3.to_checksum_address(stranger.address)


@pytest.mark.parametrize("case", ["master", "wrong object", "other group", "revoked"])
def test_anyone_but_an_active_member_of_the_named_bubble_is_refused(
    bubble: Bubble, case: str
) -> None:
    sender, group, object_id = bubble.device, bubble.group_id, bubble.object_id
    if case == "master":
        sender, object_id = bubble.master, bubble.master_object_id
    elif case == "wrong object":
        object_id = bubble.master_object_id
    elif case == "other group":
        other = funded(bubble.ledger)
        group = next(_ids)
        bubble.ledger.create_group(other, group, next(_ids))
    else:
        bubble.ledger.revoke_device(bubble.master, bubble.group_id, bubble.device.address)
    data = bubble.refusal(sender, group, object_id, b"\x01" * 300)
    assert data[:4] == NOT_MEMBER
    assert abi_decode(["uint64", "uint64"], data[4:68]) == (group, object_id)


def test_an_empty_message_is_refused(bubble: Bubble) -> None:
    assert bubble.refusal(bubble.device, bubble.group_id, bubble.object_id, b"") == EMPTY


def test_the_baseline_is_not_part_of_the_product() -> None:
    """Ledger.deploy and the package's shipped artifacts know nothing of it."""
    assert "BubblesBaseline" not in CONTRACTS
    shipped = ROOT / "src" / "vitalchain" / "ledger" / "artifacts"
    assert not (shipped / "BubblesBaseline.json").exists()
    assert "BubblesBaseline" not in (shipped / "manifest.json").read_text()


def test_the_artifact_matches_its_sources() -> None:
    """Fast guard: the contract edited without `benchmarks/baseline.py --export-artifact`."""
    sources = load_artifact()["sources"]
    assert "contracts/src/baseline/BubblesBaseline.sol" in sources
    assert_sources_unchanged(sources, "benchmarks/baseline.py --export-artifact")


def test_recompiling_reproduces_the_artifact() -> None:
    """The shipped JSON is what forge builds from the source (a few seconds of solcjs)."""
    assert_script_passes("benchmarks/baseline.py", "--check-artifact", timeout=600)
