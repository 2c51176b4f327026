"""The receipt's bytes (docs/spec/receipt.md): round trip, version, and every mutation of a
good one refused, by the parser or by the signature check the device SDK runs."""

from __future__ import annotations

import hashlib

import pytest

from vitalchain.crypto.keys import PrivateKey
from vitalchain.device.client import DeviceError, ReceiptBook
from vitalchain.errors import DecodeError
from vitalchain.wire.receipt import (
    HEADER,
    RECEIPT_CONTEXT,
    RECEIPT_SIZE,
    SIGNED_SIZE,
    MasterTerm,
    Receipt,
    signer_allowed,
)

MASTER = PrivateKey(bytes(31) + b"\x07")
DEVICE = PrivateKey(bytes(31) + b"\x09").address


def receipt(master: PrivateKey = MASTER, **fields: object) -> Receipt:
    base: dict[str, object] = {
        "group_id": 7,
        "device": DEVICE,
        "message_hash": hashlib.sha256(b"a data message").digest(),
        "first_seq": 17,
        "last_seq": 19,
        "stored_at_ms": 1_795_321_501_123,
        "gateway": master.address,
    }
    unsigned = Receipt(**{**base, **fields})  # type: ignore[arg-type]
    return unsigned.signed(master.sign(unsigned.signed_part(), RECEIPT_CONTEXT).to_rsv())


def book() -> ReceiptBook:
    return ReceiptBook(7, DEVICE, master=MASTER.address)


def test_round_trip_and_layout() -> None:
    good = receipt()
    data = good.encode()
    assert len(data) == RECEIPT_SIZE == 173
    assert SIGNED_SIZE == 108
    assert data[:4] == HEADER == b"VCt\x01"
    assert data[4:12] == (7).to_bytes(8, "big")
    assert data[12:32] == bytes.fromhex(DEVICE[2:])
    assert data[-1] in (27, 28)
    assert Receipt.parse(data) == good
    assert Receipt.from_hex(good.hex()) == good
    assert book().verify(Receipt.parse(data)) == MASTER.address


def test_an_unknown_version_is_refused() -> None:
    data = bytearray(receipt().encode())
    data[3] = 2
    with pytest.raises(DecodeError) as err:
        Receipt.parse(bytes(data))
    assert err.value.code == "unknown_version"


@pytest.mark.parametrize("size", [0, 3, 4, 107, 108, RECEIPT_SIZE - 1])
def test_truncated(size: int) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        Receipt.parse(receipt().encode()[:size])


def test_oversize_and_garbage() -> None:
    data = receipt().encode()
    with pytest.raises(DecodeError) as err:
        Receipt.parse(data + b"\x00")
    assert err.value.code == "trailing_bytes"
    with pytest.raises(DecodeError):
        Receipt.parse(b"\x00" + data)  # prepended garbage: not a receipt
    with pytest.raises(DecodeError):
        Receipt.from_hex("zz" + data.hex()[2:])
    with pytest.raises(DecodeError):
        Receipt.from_hex(None)  # an acknowledgement without the field


def test_every_flipped_bit_is_refused() -> None:
    """All 1384 single-bit mutations: each fails to parse or fails the SDK's check."""
    data = receipt().encode()
    outcomes: dict[str, int] = {}
    for bit in range(len(data) * 8):
        mutated = bytearray(data)
        mutated[bit // 8] ^= 1 << (bit % 8)
        try:
            book().verify(Receipt.parse(bytes(mutated)))
            code = "accepted"
        except DeviceError as exc:
            code = exc.code
        except DecodeError as exc:
            code = "parse: " + exc.code
        outcomes[code] = outcomes.get(code, 0) + 1
    assert "accepted" not in outcomes
    assert set(outcomes) <= {"invalid_receipt", "parse: decode_error", "parse: unknown_version"}
    assert outcomes["invalid_receipt"] > 1000  # most flips are caught by the signature


def test_fields_are_checked_when_built() -> None:
    with pytest.raises(DecodeError):
        receipt(first_seq=20, last_seq=19)
    with pytest.raises(DecodeError):
        receipt(last_seq=2**63)
    with pytest.raises(DecodeError):
        receipt(message_hash=bytes(31))
    with pytest.raises(ValueError, match="unsigned"):
        Receipt(7, DEVICE, bytes(32), 1, 1, 0, MASTER.address).encode()  # unsigned


def test_the_signature_is_domain_separated() -> None:
    """The same bytes signed under another context do not verify as a receipt."""
    good = receipt()
    other = good.signed(MASTER.sign(good.signed_part(), b"vitalchain/other").to_rsv())
    with pytest.raises(DeviceError) as err:
        book().verify(other)
    assert err.value.code == "invalid_receipt"


def test_a_master_vouches_until_its_rotation_second() -> None:
    terms = [MasterTerm("0xA", 1000), MasterTerm("0xB", None), MasterTerm("0xA", None)]
    assert signer_allowed(terms[:2], "0xA", 1_000_999)
    assert not signer_allowed(terms[:2], "0xA", 1_001_000)
    assert signer_allowed(terms[:2], "0xB", 5_000_000)
    assert signer_allowed(terms, "0xA", 9_000_000)  # master again later
    assert not signer_allowed(terms, "0xC", 0)
