"""secp256k1 identities: Wycheproof ECDSA in full, EIP-55, and agreement with eth-account."""

from __future__ import annotations

import hashlib
import os

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.vectors import load_vectors
from vitalchain.crypto.keys import (
    CURVE_ORDER,
    PrivateKey,
    PublicKey,
    Signature,
    keccak256,
    message_digest,
)
from vitalchain.errors import DecodeError, InvalidKey, InvalidSignature
from vitalchain.wire.address import is_checksum_address, parse_address, to_checksum_address


def test_wycheproof_ecdsa_secp256k1_bitcoin() -> None:
    data = load_vectors("wycheproof/ecdsa_secp256k1_sha256_bitcoin_test.json")
    counts = {"valid": 0, "invalid": 0}
    for group in data["testGroups"]:
        key = PublicKey.from_bytes(bytes.fromhex(group["publicKey"]["uncompressed"]))
        for t in group["tests"]:
            digest = hashlib.sha256(bytes.fromhex(t["msg"])).digest()
            sig = bytes.fromhex(t["sig"])
            if t["result"] == "valid":
                key.verify_der(sig, digest)
            else:
                with pytest.raises(InvalidSignature):
                    key.verify_der(sig, digest)
            counts[t["result"]] += 1
    assert counts == {"valid": 162, "invalid": 301}  # every case, none skipped


@pytest.mark.parametrize("address", load_vectors("eip55_checksum.json")["addresses"])
def test_eip55_vectors(address: str) -> None:
    assert to_checksum_address(bytes.fromhex(address[2:])) == address
    assert is_checksum_address(address)
    flipped = address[:2] + address[2:].swapcase()
    assert not is_checksum_address(flipped) or flipped == address


def test_is_checksum_address_rejects_junk() -> None:
    for junk in [
        "",
        "0x",
        "0x1234",
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",
        "0x" + "zz" * 20,
        "0x" + "ab" * 18 + " ab ",  # 42 characters that bytes.fromhex reads as 19 bytes
        "0x" + "ab" * 19 + "\n",
    ]:
        assert not is_checksum_address(junk)
        with pytest.raises(ValueError, match="not an address"):
            parse_address(junk)


@settings(max_examples=25, deadline=None)
@given(
    st.binary(min_size=32, max_size=32).filter(lambda b: 0 < int.from_bytes(b, "big") < CURVE_ORDER)
)
def test_address_matches_eth_account(secret: bytes) -> None:
    assert PrivateKey(secret).address == Account.from_key(secret).address


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_signatures_match_eth_account(seed: bytes, digest: bytes) -> None:
    secret = keccak256(seed)
    key = PrivateKey(secret)
    ours = key.sign_digest(digest)
    theirs = Account.unsafe_sign_hash(digest, secret)
    # Both use RFC 6979 nonces and low-S, so the signatures are byte-identical.
    assert ours.to_rsv() == bytes(theirs.signature)
    assert Account._recover_hash(digest, signature=ours.to_rsv()) == key.address
    assert PublicKey.recover(Signature.from_rsv(bytes(theirs.signature)), digest) == key.public_key


def test_recovers_eip191_personal_sign_from_eth_account() -> None:
    secret = os.urandom(32)
    signed = Account.sign_message(encode_defunct(text="vitals"), secret)
    recovered = PublicKey.recover(
        Signature.from_rsv(bytes(signed.signature)), bytes(signed.message_hash)
    )
    assert recovered.address == Account.from_key(secret).address


def test_sign_verify_with_context() -> None:
    key = PrivateKey.generate()
    sig = key.sign(b"reading", b"vitalchain/reading")
    key.public_key.verify(sig, b"reading", b"vitalchain/reading")
    with pytest.raises(InvalidSignature):
        key.public_key.verify(sig, b"reading", b"vitalchain/other")
    with pytest.raises(InvalidSignature):
        key.public_key.verify(sig, b"readinG", b"vitalchain/reading")
    with pytest.raises(InvalidSignature):
        PrivateKey.generate().public_key.verify(sig, b"reading", b"vitalchain/reading")
    with pytest.raises(ValueError, match="context"):
        message_digest(b"x", b"")


def test_high_s_is_refused() -> None:
    key = PrivateKey.generate()
    digest = os.urandom(32)
    sig = key.sign_digest(digest)
    assert sig.s <= CURVE_ORDER // 2
    high = Signature(
        sig.compact[:32] + (CURVE_ORDER - sig.s).to_bytes(32, "big"), 1 - sig.recovery_id
    )
    with pytest.raises(InvalidSignature):
        key.public_key.verify_digest(high, digest)
    with pytest.raises(InvalidSignature):
        PublicKey.recover(high, digest)


def test_ecdh_is_symmetric_and_is_sha256_of_the_shared_point() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    shared = a.ecdh(b.public_key)
    assert shared == b.ecdh(a.public_key)
    point = coincurve.PublicKey(b.public_key.compressed).multiply(a.secret)
    assert shared == hashlib.sha256(point.format()).digest()


@pytest.mark.parametrize(
    "secret",
    [
        bytes(32),
        CURVE_ORDER.to_bytes(32, "big"),
        (CURVE_ORDER + 1).to_bytes(32, "big"),
        b"\xff" * 32,
        bytes(31),
    ],
    ids=["zero", "n", "n+1", "max", "short"],
)
def test_invalid_private_keys(secret: bytes) -> None:
    with pytest.raises(InvalidKey):
        PrivateKey(secret)


@pytest.mark.parametrize(
    "blob",
    [b"", bytes(33), b"\x02" + b"\xff" * 32, b"\x04" + bytes(64), b"\x05" + bytes(32), bytes(63)],
    ids=["empty", "zero-compressed", "x-not-on-curve", "zero-uncompressed", "bad-prefix", "short"],
)
def test_invalid_public_keys(blob: bytes) -> None:
    with pytest.raises(InvalidKey):
        PublicKey.from_bytes(blob)


def test_hybrid_public_key_encodings_are_refused() -> None:
    """SEC1 hybrid forms (0x06/0x07 ‖ x ‖ y) parse in libsecp256k1; we refuse them."""
    pub = PrivateKey.generate().public_key
    parity = pub.compressed[0] - 2  # 0 for even y, 1 for odd
    good_hybrid = bytes([6 + parity]) + pub.xy
    wrong_parity = bytes([7 - parity]) + pub.xy
    coincurve.PublicKey(good_hybrid)  # the library alone would take it
    for blob in (good_hybrid, wrong_parity):
        with pytest.raises(InvalidKey, match="0x04"):
            PublicKey.from_bytes(blob)
    for prefix in (0x02, 0x03):  # the compressed prefixes on a 65-byte key, too
        with pytest.raises(InvalidKey):
            PublicKey.from_bytes(bytes([prefix]) + pub.xy)


def test_public_key_forms_roundtrip() -> None:
    pub = PrivateKey.generate().public_key
    assert PublicKey.from_bytes(pub.compressed) == pub
    assert PublicKey.from_bytes(pub.uncompressed) == pub
    assert PublicKey.from_bytes(pub.xy) == pub
    assert pub.address_bytes == keccak256(pub.xy)[12:]


def test_signature_encoding() -> None:
    sig = PrivateKey.generate().sign(b"m", b"ctx")
    blob = sig.to_bytes()
    assert blob[:4] == b"VCs\x01"
    assert len(blob) == 69
    assert Signature.from_bytes(blob) == sig
    assert Signature.from_rsv(sig.to_rsv()) == sig
    for bad in (
        blob + b"\x00",
        blob[:-1],
        b"VCs\x02" + blob[4:],
        b"VCa\x01" + blob[4:],
        blob[:-1] + b"\x02",
    ):
        with pytest.raises(DecodeError):
            Signature.from_bytes(bad)
    with pytest.raises(DecodeError):
        Signature.from_rsv(sig.compact + b"\x1d")


def test_repr_hides_the_secret() -> None:
    key = PrivateKey.generate()
    assert key.secret.hex() not in repr(key)
    assert "secret" in repr(key)


def test_keccak256_is_ethereums_not_fips_sha3() -> None:
    # keccak256("") as used across Ethereum (e.g. the empty code hash in the Yellow Paper).
    assert (
        keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()
