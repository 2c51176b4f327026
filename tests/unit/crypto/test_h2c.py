"""RFC 9380: expand_message_xmd (K.1) and secp256k1_XMD:SHA-256_SSWU_RO_ (J.8.1), every stage."""

from __future__ import annotations

import pytest

from tests.support.vectors import load_vectors
from vitalchain.crypto.primitives.h2c import (
    expand_message_xmd,
    hash_to_curve,
    hash_to_field,
    map_to_curve,
)

XMD = load_vectors("rfc9380_expand_message_xmd_sha256.json")
H2C = load_vectors("rfc9380_secp256k1_sswu_ro.json")


def _pair(point: tuple[int, int]) -> list[str]:
    return [f"{point[0]:064x}", f"{point[1]:064x}"]


@pytest.mark.parametrize("v", XMD["vectors"], ids=lambda v: f"{v['msg'][:8]}-{v['len_in_bytes']}")
def test_expand_message_xmd(v: dict[str, object]) -> None:
    out = expand_message_xmd(
        str(v["msg"]).encode(), XMD["dst"].encode(), int(str(v["len_in_bytes"]))
    )
    assert out.hex() == v["uniform_bytes"]


@pytest.mark.parametrize("v", H2C["vectors"], ids=lambda v: v["msg"][:8] or "empty")
def test_hash_to_curve_every_stage(v: dict[str, list[str]]) -> None:
    msg, dst = str(v["msg"]).encode(), H2C["dst"].encode()
    u = hash_to_field(msg, dst, 2)
    assert [f"{x:064x}" for x in u] == v["u"]
    assert _pair(map_to_curve(u[0])) == v["Q0"]
    assert _pair(map_to_curve(u[1])) == v["Q1"]
    assert _pair(hash_to_curve(msg, dst).point()) == v["P"]


def test_vector_count() -> None:
    assert len(H2C["vectors"]) == 5
    assert len(XMD["vectors"]) == 10


def test_dst_is_domain_separation() -> None:
    assert hash_to_curve(b"abc", b"A").format() != hash_to_curve(b"abc", b"B").format()


def test_oversize_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="DST"):
        expand_message_xmd(b"", b"x" * 256, 32)
    with pytest.raises(ValueError, match="too large"):
        expand_message_xmd(b"", b"dst", 255 * 32 + 1)


def test_u_zero_maps_to_a_curve_point() -> None:
    """The exceptional case tv1 = 0 of simplified SWU (u = 0) still lands on the curve."""
    x, y = map_to_curve(0)
    p = 2**256 - 2**32 - 977
    assert (y * y - x**3 - 7) % p == 0
