"""Token, request and rotation digests: the spec's vector, and eth-account's EIP-712 agrees."""

from __future__ import annotations

from eth_account.messages import encode_typed_data

from tests.support.vectors import load_vectors
from vitalchain.crypto import PrivateKey, keccak256
from vitalchain.ledger.eip712 import Domain, request_digest, rotation_digest, token_digest

V = load_vectors("token_v1.json")
DOMAIN = Domain(V["chain_id"], V["verifying_contract"])


def key(field: str) -> PrivateKey:
    return PrivateKey(int(V[field], 16).to_bytes(32, "big"))


def test_spec_vector() -> None:
    master, device, new_master = (
        key("master_secret_int"),
        key("device_secret_int"),
        key("new_master_secret_int"),
    )
    assert (master.address, device.address, new_master.address) == (
        V["master"],
        V["device"],
        V["new_master"],
    )
    assert DOMAIN.separator.hex() == V["domain_separator"]
    digest = token_digest(DOMAIN, V["group_id"], V["object_id"], device.address)
    assert digest.hex() == V["token_digest"]
    token = master.sign_digest(digest).to_rsv()
    assert token.hex() == V["token"]
    assert keccak256(token).hex() == V["token_hash"]
    req = request_digest(DOMAIN, V["group_id"], V["object_id"], device.address, token)
    assert req.hex() == V["request_digest"]
    assert device.sign_digest(req).to_rsv().hex() == V["request"]
    rot = rotation_digest(DOMAIN, V["group_id"], new_master.address)
    assert rot.hex() == V["rotation_digest"]
    assert new_master.sign_digest(rot).to_rsv().hex() == V["rotation"]


def test_eth_account_computes_the_same_token_digest() -> None:
    message = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "DeviceToken": [
                    {"name": "groupId", "type": "uint64"},
                    {"name": "objectId", "type": "uint64"},
                    {"name": "device", "type": "address"},
                ],
            },
            "primaryType": "DeviceToken",
            "domain": {
                "name": "vitalchain",
                "version": "1",
                "chainId": V["chain_id"],
                "verifyingContract": V["verifying_contract"],
            },
            "message": {
                "groupId": V["group_id"],
                "objectId": V["object_id"],
                "device": V["device"],
            },
        }
    )
    digest = keccak256(b"\x19" + message.version + message.header + message.body)
    assert digest.hex() == V["token_digest"]


def test_domain_binds_chain_and_contract() -> None:
    other_chain = Domain(V["chain_id"] + 1, V["verifying_contract"])
    other_contract = Domain(V["chain_id"], V["master"])
    base = token_digest(DOMAIN, 7, 1001, V["device"])
    assert token_digest(other_chain, 7, 1001, V["device"]) != base
    assert token_digest(other_contract, 7, 1001, V["device"]) != base
