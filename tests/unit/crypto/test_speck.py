"""SPECK: the designers' vectors in both printed forms, and the C CTR kernel vs the reference."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.vectors import load_vectors
from vitalchain.crypto.primitives import _speck
from vitalchain.crypto.primitives.speck import (
    SPECK64_128,
    SPECK128_128,
    SPECK128_192,
    SPECK128_256,
    Speck,
)
from vitalchain.errors import InvalidKey

VARIANTS = {v.name: v for v in (SPECK64_128, SPECK128_128, SPECK128_192, SPECK128_256)}
DATA = load_vectors("speck.json")


def paper_to_bytes(text: str) -> bytes:
    """The paper prints words most-significant first; the byte form is that hex reversed."""
    return bytes.fromhex(text.replace(" ", ""))[::-1]


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["variant"])
def test_byte_form_vectors(vector: dict[str, str]) -> None:
    cipher = Speck(VARIANTS[vector["variant"]], bytes.fromhex(vector["key"]))
    pt, ct = bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["ciphertext"])
    assert cipher.encrypt_block(pt) == ct
    assert cipher.decrypt_block(ct) == pt


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["variant"])
def test_paper_form_vectors(vector: dict[str, str]) -> None:
    key = paper_to_bytes(vector["key_paper"])
    assert key.hex() == vector["key"]
    cipher = Speck(VARIANTS[vector["variant"]], key)
    ct = cipher.encrypt_block(paper_to_bytes(vector["plaintext_paper"]))
    assert ct == paper_to_bytes(vector["ciphertext_paper"])


def test_all_four_variants_covered() -> None:
    assert {v["variant"] for v in DATA["vectors"]} == set(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=lambda v: v.name)
def test_wrong_key_length_is_refused(variant: object) -> None:
    with pytest.raises(InvalidKey):
        Speck(variant, bytes(5))  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 127, 128, 129, 4095, 4096, 4097, 70000])
@pytest.mark.parametrize(
    "variant", [SPECK128_128, SPECK128_192, SPECK128_256], ids=lambda v: v.name
)
def test_c_kernel_matches_python_reference(length: int, variant: object) -> None:
    cipher = Speck(variant, os.urandom(variant.key_size))  # type: ignore[attr-defined]
    nonce, data = os.urandom(12), os.urandom(length)
    out = cipher.ctr(nonce, data, counter=7)
    assert out == cipher.ctr_reference(nonce, data, counter=7)
    assert cipher.ctr(nonce, out, counter=7) == data


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=2**32 - 40))
def test_ctr_counter_and_lengths(data: bytes, counter: int) -> None:
    cipher = Speck(SPECK128_256, bytes(range(32)))
    nonce = bytes(12)
    assert cipher.ctr(nonce, data, counter) == cipher.ctr_reference(nonce, data, counter)


def test_ctr_refuses_counter_wrap_and_bad_nonce() -> None:
    cipher = Speck(SPECK128_256, bytes(32))
    with pytest.raises(ValueError, match="wrap"):
        cipher.ctr(bytes(12), bytes(32), counter=2**32 - 1)
    with pytest.raises(ValueError, match="wrap"):
        cipher.ctr(bytes(12), b"", counter=2**32)
    with pytest.raises(ValueError, match="12 bytes"):
        cipher.ctr(bytes(16), b"x")


def test_c_kernel_itself_refuses_a_wrapping_counter() -> None:
    """The C kernel guards its own 32-bit counter; it used to wrap (and to mask big ints)."""
    cipher = Speck(SPECK128_256, bytes(range(32)))
    rk, nonce = cipher._packed, bytes(12)
    last = _speck.ctr_xor(rk, nonce, 2**32 - 1, bytes(16))  # the very last block is fine
    assert last == cipher.ctr_reference(nonce, bytes(16), 2**32 - 1)
    assert _speck.ctr_xor(rk, nonce, 2**32 - 2, bytes(32)) == cipher.ctr_reference(
        nonce, bytes(32), 2**32 - 2
    )
    cases = {
        "one byte past the last block": (2**32 - 1, 17),
        "many blocks past": (2**32 - 8, 16 * 200),
        "counter 2^32": (2**32, 1),
        "counter 2^32, no data": (2**32, 0),
        "2^64 + 5 (was masked to 5)": (2**64 + 5, 1),
        "negative": (-1, 1),
    }
    for desc, (counter, length) in cases.items():
        with pytest.raises(OverflowError, match="CTR counter"):
            _speck.ctr_xor(rk, nonce, counter, bytes(length))
        assert desc
    with pytest.raises(TypeError):
        _speck.ctr_xor(rk, nonce, 1.0, b"x")  # type: ignore[arg-type]


def test_ctr_is_not_offered_for_64_bit_blocks() -> None:
    with pytest.raises(ValueError, match="Speck128"):
        Speck(SPECK64_128, bytes(16)).ctr(bytes(12), b"x")


def test_block_size_is_checked() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Speck(SPECK128_128, bytes(16)).encrypt_block(bytes(8))
