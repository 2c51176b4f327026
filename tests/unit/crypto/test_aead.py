"""AEAD: every Wycheproof case for ChaCha20-Poly1305, AES-GCM and HKDF, then the recipe."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.threads import run_together
from tests.support.vectors import load_vectors
from vitalchain.crypto.aead import (
    USAGE_LIMITS,
    Aead,
    KeyExhausted,
    Suite,
    Usage,
    UsageLimit,
    generate_key,
)
from vitalchain.crypto.primitives.aead import (
    AeadPrimitive,
    AesGcmPrimitive,
    ChaCha20Poly1305Primitive,
    SpeckCtrHmacPrimitive,
    hkdf_sha256,
)
from vitalchain.errors import DecodeError, DecryptionError, InvalidKey


def _cases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = load_vectors(f"wycheproof/{name}")
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


def _supported_nonce(factory: Callable[[bytes], AeadPrimitive], size: int) -> bool:
    """pyca documents: ChaCha20-Poly1305 takes 12-byte nonces, AESGCM 8 to 128 bytes."""
    if factory is ChaCha20Poly1305Primitive:
        return size == 12
    return 8 <= size <= 128


def _run_wycheproof(name: str, factory: Callable[[bytes], AeadPrimitive]) -> tuple[int, int]:
    ran = skipped = 0
    for group, t in _cases(name):
        key, iv = bytes.fromhex(t["key"]), bytes.fromhex(t["iv"])
        aad, msg = bytes.fromhex(t["aad"]), bytes.fromhex(t["msg"])
        ct_tag = bytes.fromhex(t["ct"]) + bytes.fromhex(t["tag"])
        if not _supported_nonce(factory, len(iv)):
            if t["result"] == "valid":
                skipped += 1  # a valid case the library cannot express
                continue
            # An invalid case must still be refused, whatever the reason.
            with pytest.raises(DecryptionError):
                factory(key).decrypt(iv, ct_tag, aad)
            ran += 1
            continue
        prim = factory(key)
        if t["result"] == "valid":
            assert prim.encrypt(iv, msg, aad) == ct_tag, t["tcId"]
            assert prim.decrypt(iv, ct_tag, aad) == msg, t["tcId"]
        else:
            with pytest.raises(DecryptionError):
                prim.decrypt(iv, ct_tag, aad)
        ran += 1
        assert group["tagSize"] == 128
    return ran, skipped


def test_wycheproof_chacha20_poly1305() -> None:
    ran, skipped = _run_wycheproof("chacha20_poly1305_test.json", ChaCha20Poly1305Primitive)
    # 325 cases; the 9 with non-96-bit nonces are all invalid ones, and are refused.
    assert (ran, skipped) == (325, 0)


def test_wycheproof_aes_gcm() -> None:
    ran, skipped = _run_wycheproof("aes_gcm_test.json", AesGcmPrimitive)
    # 316 cases; pyca documents nonces of 8 to 128 bytes, so the 27 valid cases with 1, 2,
    # 4, 6 or 257-byte nonces cannot be expressed.  The 6 invalid empty-nonce cases still run.
    assert (ran, skipped) == (289, 27)


def test_wycheproof_hkdf_sha256() -> None:
    counts = {"valid": 0, "invalid": 0}
    for _group, t in _cases("hkdf_sha256_test.json"):
        ikm, salt, info = (bytes.fromhex(t[k]) for k in ("ikm", "salt", "info"))
        if t["result"] == "valid":
            assert hkdf_sha256(ikm, t["size"], salt=salt, info=info).hex() == t["okm"], t["tcId"]
        else:
            with pytest.raises(ValueError, match="larger than 8160"):
                hkdf_sha256(ikm, t["size"], salt=salt, info=info)
        counts[t["result"]] += 1
    assert counts == {"valid": 83, "invalid": 3}


# --- the recipe -------------------------------------------------------------------------------

SUITES = list(Suite)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("size", [0, 1, 100, 1024, 70000])
def test_roundtrip(suite: Suite, size: int) -> None:
    box = Aead(generate_key(), suite)
    msg = os.urandom(size)
    sealed = box.seal(msg, b"context")
    assert sealed[:5] == b"VCa\x01" + bytes([suite])
    assert Aead.suite_of(sealed) is suite
    assert box.open(sealed, b"context") == msg


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_every_single_byte_change_is_one_error(suite: Suite) -> None:
    box = Aead(generate_key(), suite)
    sealed = box.seal(b"heart rate 72 bpm", b"aad")
    messages = set()
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError) as err:
            box.open(bytes(tampered), b"aad")
        messages.add(str(err.value))
    assert messages == {DecryptionError.MESSAGE}


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_refusals(suite: Suite) -> None:
    key = generate_key()
    box = Aead(key, suite)
    sealed = box.seal(b"spo2 97", b"aad")
    other_suite = Suite(suite % 3 + 1)
    cases = {
        "wrong aad": (box, sealed, b"other"),
        "wrong key": (Aead(generate_key(), suite), sealed, b"aad"),
        "suite rewritten": (box, sealed[:4] + bytes([other_suite]) + sealed[5:], b"aad"),
        "other suite, same key": (Aead(key, other_suite), sealed, b"aad"),
        "unknown version": (box, sealed[:3] + b"\x02" + sealed[4:], b"aad"),
        "wrong kind": (box, b"VCe" + sealed[3:], b"aad"),
        "truncated": (box, sealed[:-1], b"aad"),
        "trailing byte": (box, sealed + b"\x00", b"aad"),
        "header only": (box, sealed[:5], b"aad"),
        "empty": (box, b"", b"aad"),
        "prepended garbage": (box, b"\x00" + sealed, b"aad"),
    }
    for desc, (opener, blob, aad) in cases.items():
        with pytest.raises(DecryptionError):
            opener.open(blob, aad)
        assert desc


def test_injected_randomness_makes_output_deterministic(counter_random: Any) -> None:
    key = bytes(32)
    a = Aead(key).seal(b"x", random=counter_random)
    assert a[5:17] == (1).to_bytes(32, "big")[:12]
    assert Aead(key).open(a) == b"x"


def test_bad_keys_and_suite_names() -> None:
    with pytest.raises(InvalidKey):
        Aead(bytes(16))
    with pytest.raises(InvalidKey):
        SpeckCtrHmacPrimitive(bytes(31))
    with pytest.raises(ValueError, match="unknown AEAD suite"):
        Suite.parse("rot13")
    assert Suite.parse("SPECK") is Suite.SPECK128_256_CTR_HMAC_SHA256
    assert Suite.parse("chacha20_poly1305") is Suite.CHACHA20_POLY1305
    with pytest.raises(DecodeError):
        Aead.suite_of(b"VCa\x01\x09" + bytes(40))


def test_speck_suite_uses_independent_keys() -> None:
    """Encrypt-then-MAC with HKDF-split keys: the keystream is not the raw key's."""
    key = bytes(range(32))
    prim = SpeckCtrHmacPrimitive(key)
    from vitalchain.crypto.primitives.speck import SPECK128_256, Speck

    raw = Speck(SPECK128_256, key).ctr(bytes(12), bytes(16))
    assert prim.encrypt(bytes(12), bytes(16), b"")[:16] != raw
    assert len(prim.encrypt(bytes(12), b"abc", b"")) == 3 + 32


# --- per-key limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_a_key_refuses_to_seal_past_its_message_limit(suite: Suite) -> None:
    """Before, a key sealed without end; random nonces collide after ~2^48 messages."""
    box = Aead(generate_key(), suite, limit=UsageLimit(messages=3))
    sealed = [box.seal(b"hr %d" % i) for i in range(3)]
    assert box.used.messages == 3
    assert box.remaining == 0
    drawn: list[int] = []

    def watched(n: int) -> bytes:
        drawn.append(n)
        return os.urandom(n)

    with pytest.raises(KeyExhausted) as err:
        box.seal(b"hr 4", random=watched)
    assert err.value.code == "key_exhausted"
    assert "re-key" in str(err.value)
    assert drawn == []  # refused before a nonce was even drawn
    assert box.used.messages == 3  # a refusal spends nothing
    assert [box.open(c) for c in sealed] == [b"hr 0", b"hr 1", b"hr 2"]  # opening still works


def test_the_block_bound_counts_sizes() -> None:
    """Speck128 and AES are 128-bit block ciphers: their keys also have a block budget."""
    box = Aead(generate_key(), Suite.AES_256_GCM, limit=UsageLimit(messages=100, blocks=6))
    box.seal(bytes(16))  # 1 block + 1
    box.seal(bytes(17))  # 2 blocks + 1
    assert box.used == Usage(messages=2, blocks=5)
    with pytest.raises(KeyExhausted):
        box.seal(bytes(1))  # would be 7
    assert box.used == Usage(messages=2, blocks=5)
    box.seal(b"")  # exactly 6
    with pytest.raises(KeyExhausted):
        box.seal(b"")


def test_a_rebuilt_object_continues_the_count() -> None:
    key = generate_key()
    first = Aead(key, limit=UsageLimit(messages=4))
    first.seal(b"a")
    first.seal(b"b")
    again = Aead(key, limit=UsageLimit(messages=4), used=first.used)
    again.seal(b"c")
    again.seal(b"d")
    with pytest.raises(KeyExhausted):
        again.seal(b"e")
    with pytest.raises(ValueError, match="negative"):
        Usage(messages=-1)


def test_the_limit_holds_under_threads() -> None:
    box = Aead(generate_key(), limit=UsageLimit(messages=500))
    outcomes: list[bool] = []

    def worker() -> None:
        for _ in range(100):
            try:
                box.seal(b"x")
                outcomes.append(True)
            except KeyExhausted:
                outcomes.append(False)

    run_together(worker, [()] * 8)
    assert outcomes.count(True) == 500
    assert box.used.messages == 500


def test_default_limits_per_suite() -> None:
    """The documented numbers (docs/spec/aead.md): 2^32 messages for 96-bit random nonces;
    2^48 blocks more for the 128-bit block ciphers; none for ChaCha20's stream."""
    assert USAGE_LIMITS[Suite.CHACHA20_POLY1305] == UsageLimit(2**32, None)
    assert USAGE_LIMITS[Suite.AES_256_GCM] == UsageLimit(2**32, 2**48)
    assert USAGE_LIMITS[Suite.SPECK128_256_CTR_HMAC_SHA256] == UsageLimit(2**32, 2**48)
    for suite in SUITES:
        box = Aead(generate_key(), suite)
        assert box.limit == USAGE_LIMITS[suite]
        assert box.remaining == 2**32
    nearly = Aead(generate_key(), used=Usage(messages=2**32 - 1))
    nearly.seal(b"last")
    with pytest.raises(KeyExhausted):
        nearly.seal(b"one too many")


@pytest.mark.parametrize("suite", list(Suite))
def test_the_cipher_is_built_at_first_use(suite: Suite) -> None:
    """A gateway holds an Aead per enrolled device's session: the library's cipher contexts
    (about 2.5 KB each) are built only once the key seals or opens (issue 16, item 4)."""
    key = bytes(range(32))
    idle = Aead(key, suite)
    assert idle._primitive is None
    sealed = idle.seal(b"reading", b"aad")
    assert idle._primitive is not None
    reader = Aead(key, suite)
    assert reader.open(sealed, b"aad") == b"reading"
    with pytest.raises(InvalidKey):
        Aead(key[:31], suite)  # a bad key is still refused when built, not at first use
