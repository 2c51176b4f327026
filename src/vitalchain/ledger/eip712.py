"""The EIP-712 digests TrustGroups checks with ecrecover (docs/spec/token.md).

Computed here, in Python, so a gateway can issue tokens and a device can sign requests
without a round trip; tests check them against the contract's own view functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import encode

from vitalchain.crypto.keys import keccak256

__all__ = ["Domain", "request_digest", "rotation_digest", "token_digest"]

_DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_TOKEN_TYPEHASH = keccak256(b"DeviceToken(uint64 groupId,uint64 objectId,address device)")
_REQUEST_TYPEHASH = keccak256(
    b"AssociationRequest(uint64 groupId,uint64 objectId,address device,bytes32 tokenHash)"
)
_ROTATION_TYPEHASH = keccak256(b"MasterRotation(uint64 groupId,address newMaster)")


@dataclass(frozen=True, slots=True)
class Domain:
    """Binds a digest to one chain and one TrustGroups deployment."""

    chain_id: int
    verifying_contract: str

    @property
    def separator(self) -> bytes:
        return keccak256(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    _DOMAIN_TYPEHASH,
                    keccak256(b"vitalchain"),
                    keccak256(b"1"),
                    self.chain_id,
                    self.verifying_contract,
                ],
            )
        )

    def digest(self, struct_hash: bytes) -> bytes:
        return keccak256(b"\x19\x01" + self.separator + struct_hash)


def token_digest(domain: Domain, group_id: int, object_id: int, device: str) -> bytes:
    """The paper's keccak(groupID ‖ objectID ‖ address), typed and domain-separated."""
    struct = encode(
        ["bytes32", "uint64", "uint64", "address"], [_TOKEN_TYPEHASH, group_id, object_id, device]
    )
    return domain.digest(keccak256(struct))


def request_digest(
    domain: Domain, group_id: int, object_id: int, device: str, master_signature: bytes
) -> bytes:
    struct = encode(
        ["bytes32", "uint64", "uint64", "address", "bytes32"],
        [_REQUEST_TYPEHASH, group_id, object_id, device, keccak256(master_signature)],
    )
    return domain.digest(keccak256(struct))


def rotation_digest(domain: Domain, group_id: int, new_master: str) -> bytes:
    struct = encode(["bytes32", "uint64", "address"], [_ROTATION_TYPEHASH, group_id, new_master])
    return domain.digest(keccak256(struct))
