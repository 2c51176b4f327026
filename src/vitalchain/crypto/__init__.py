"""vitalchain's cryptography: recipes here, raw primitives in :mod:`.primitives`.

Application code imports from this module only.  Recipes choose nonces, frame every output
with a version tag, and raise (never return False) when something does not verify:

- :class:`Aead` / :class:`Suite`: authenticated encryption (ChaCha20-Poly1305 default,
  AES-256-GCM, SPECK128/256-CTR+HMAC-SHA256), with a per-key seal limit per suite
  (:data:`USAGE_LIMITS`; :class:`KeyExhausted`, code ``key_exhausted``, means re-key).
- :func:`seal_for` / :class:`Envelope`: hybrid "double" encryption for many recipients.
- :class:`PrivateKey` / :class:`PublicKey` / :class:`Signature`: secp256k1 identities,
  Ethereum addresses, ECDSA with low-S, ECDH.
- :func:`ring_sign` / :func:`ring_verify`: linkable bLSAG ring signatures.
- :class:`MerkleTree` and the proof verifiers: the RFC 9162 log behind on-chain anchors;
  :class:`CompactRange`, the same log as O(log n) hashes, for whoever only appends and anchors.
"""

from vitalchain.crypto.aead import (
    DEFAULT_SUITE,
    USAGE_LIMITS,
    Aead,
    KeyExhausted,
    Suite,
    Usage,
    UsageLimit,
    generate_key,
)
from vitalchain.crypto.envelope import Envelope, seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256
from vitalchain.crypto.merkle import (
    CompactRange,
    ConsistencyProof,
    InclusionProof,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from vitalchain.crypto.ring import RingSignature, key_image
from vitalchain.crypto.ring import sign as ring_sign
from vitalchain.crypto.ring import verify as ring_verify
from vitalchain.wire.address import is_checksum_address, to_checksum_address

__all__ = [
    "DEFAULT_SUITE",
    "USAGE_LIMITS",
    "Aead",
    "CompactRange",
    "ConsistencyProof",
    "Envelope",
    "InclusionProof",
    "KeyExhausted",
    "MerkleTree",
    "PrivateKey",
    "PublicKey",
    "RingSignature",
    "Signature",
    "Suite",
    "Usage",
    "UsageLimit",
    "generate_key",
    "is_checksum_address",
    "keccak256",
    "key_image",
    "leaf_hash",
    "ring_sign",
    "ring_verify",
    "seal_for",
    "to_checksum_address",
    "verify_consistency",
    "verify_inclusion",
]
