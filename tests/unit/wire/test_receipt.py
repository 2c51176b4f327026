"""The receipt's bytes (docs/spec/receipt.md): round trip, versions (v1 still read beside the
cumulative v2), and every mutation of a good one refused, by the parser or by the signature
check the device SDK runs; the device's book's checks of a cumulative acknowledgement."""

from __future__ import annotations

import hashlib

import pytest

from vitalchain.crypto.keys import PrivateKey
from vitalchain.device.client import DeviceError, ReceiptBook
from vitalchain.errors import DecodeError
from vitalchain.wire.receipt import (
    CUMULATIVE_HEADER,
    HEADER,
    MAX_COVERED,
    RECEIPT_CONTEXT,
    RECEIPT_SIZE,
    SIGNED_SIZE,
    Covered,
    MasterTerm,
    Receipt,
    cumulative_signed_bytes,
    cumulative_size,
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
    unsigned = Receipt.single(**{**base, **fields})  # type: ignore[arg-type]
    return unsigned.signed(master.sign(unsigned.signed_part(), RECEIPT_CONTEXT).to_rsv())


def covered(n: int, at: int = 0) -> tuple[Covered, ...]:
    """``n`` messages of two readings each, seqs from ``at``."""
    return tuple(
        Covered(hashlib.sha256(b"message %d" % i).digest(), at + 2 * i, at + 2 * i + 1)
        for i in range(n)
    )


def cumulative(n: int = 3, master: PrivateKey = MASTER, **fields: object) -> Receipt:
    base: dict[str, object] = {
        "group_id": 7,
        "device": DEVICE,
        "entries": covered(n),
        "stored_at_ms": 1_795_321_501_123,
        "gateway": master.address,
    }
    unsigned = Receipt(**{**base, **fields})  # type: ignore[arg-type]
    return unsigned.signed(master.sign(unsigned.signed_part(), RECEIPT_CONTEXT).to_rsv())


def cumulative_ack(receipt: Receipt) -> dict[str, object]:
    """The ``"v": 2`` acknowledgement a gateway sends with ``receipt`` (telemetry.md)."""
    return {
        "v": 2,
        "acks": [
            {"message_id": e.message_hash.hex(), "accepted": 2, "last_seq": e.last_seq}
            for e in receipt.entries
        ],
        "receipt": receipt.hex(),
    }


def book(keep: int = 4096) -> ReceiptBook:
    return ReceiptBook(7, DEVICE, master=MASTER.address, keep=keep)


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
    data[3] = 3
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
        Receipt.single(7, DEVICE, bytes(32), 1, 1, 0, MASTER.address).encode()  # unsigned


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


# --- v2: one signature over 1..64 messages ------------------------------------------------------


def test_cumulative_round_trip_and_layout() -> None:
    good = cumulative(3)
    data = good.encode()
    assert len(data) == cumulative_size(3) == 126 + 48 * 3
    assert data[:4] == CUMULATIVE_HEADER == b"VCt\x02"
    assert data[4:12] == (7).to_bytes(8, "big")
    assert data[12:32] == bytes.fromhex(DEVICE[2:])
    assert data[32:40] == (1_795_321_501_123).to_bytes(8, "big")
    assert data[40:60] == bytes.fromhex(MASTER.address[2:])
    assert data[60] == 3
    first = good.entries[0]
    assert data[61:109] == first.message_hash + (0).to_bytes(8, "big") + (1).to_bytes(8, "big")
    assert Receipt.parse(data) == good
    assert Receipt.from_hex(good.hex()) == good
    assert good.signed_part() == cumulative_signed_bytes(
        7,
        bytes.fromhex(DEVICE[2:]),
        1_795_321_501_123,
        bytes.fromhex(MASTER.address[2:]),
        [(e.message_hash, e.first_seq, e.last_seq) for e in good.entries],
    )
    assert book().verify(Receipt.parse(data)) == MASTER.address
    most = cumulative(MAX_COVERED)
    assert Receipt.parse(most.encode()) == most


def test_v1_is_still_read_beside_v2() -> None:
    """A v1 receipt parses as v1, covering its one message; a v2 one of one entry is another
    object (other bytes, other signed part) for the same facts."""
    old = receipt()
    parsed = Receipt.parse(old.encode())
    assert parsed.version == 1
    assert parsed.only == Covered(old.only.message_hash, 17, 19)
    one = cumulative(1)
    assert one.version == 2
    assert one.signed_part()[:4] != old.signed_part()[:4]
    assert Receipt.parse(one.encode()) == one
    with pytest.raises(ValueError, match="covers 3 messages"):
        _ = cumulative(3).only


@pytest.mark.parametrize("count", [0, MAX_COVERED + 1])
def test_a_cumulative_count_out_of_bounds_is_refused(count: int) -> None:
    data = bytearray(cumulative(1).encode()[:61])
    data[60] = count
    data += bytes(48 * count + 65)
    with pytest.raises(DecodeError, match=r"covers 1\.\.64"):
        Receipt.parse(bytes(data))
    with pytest.raises(DecodeError, match=r"covers 1\.\.64"):
        cumulative_signed_bytes(7, bytes(20), 0, bytes(20), [(bytes(32), 0, 0)] * count)
    with pytest.raises(DecodeError, match=r"covers 1\.\.64"):
        Receipt(7, DEVICE, covered(count), 0, MASTER.address)


def test_cumulative_truncated_trailing_and_duplicates() -> None:
    data = cumulative(2).encode()
    for size in (4, 60, 61, 108, len(data) - 1):
        with pytest.raises(DecodeError, match="truncated"):
            Receipt.parse(data[:size])
    with pytest.raises(DecodeError) as err:
        Receipt.parse(data + b"\x00")
    assert err.value.code == "trailing_bytes"
    twice = covered(1) * 2
    with pytest.raises(DecodeError, match="covered twice"):
        Receipt(7, DEVICE, twice, 0, MASTER.address)
    with pytest.raises(DecodeError, match="covered twice"):
        cumulative_signed_bytes(7, bytes(20), 0, bytes(20), [(e.message_hash, 0, 0) for e in twice])
    with pytest.raises(DecodeError, match="exactly one"):
        Receipt(7, DEVICE, covered(2), 0, MASTER.address, version=1)
    with pytest.raises(DecodeError, match="seqs"):
        Covered(bytes(32), 5, 4)


def test_every_flipped_bit_of_a_cumulative_receipt_is_refused() -> None:
    data = cumulative(2).encode()
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
    assert set(outcomes) <= {
        "invalid_receipt",
        "parse: decode_error",
        "parse: unknown_version",
        "parse: trailing_bytes",
    }
    assert outcomes["invalid_receipt"] > 1500


def test_a_forged_or_foreign_cumulative_receipt_is_refused() -> None:
    forger = PrivateKey.generate()
    forged = cumulative(3, master=forger)  # names itself
    posing = cumulative(3).signed(
        forger.sign(cumulative(3).signed_part(), RECEIPT_CONTEXT).to_rsv()
    )
    other_device = cumulative(3, device=forger.address)
    for bad in (forged, posing, other_device, cumulative(3, group_id=8)):
        with pytest.raises(DeviceError) as err:
            book().verify(bad)
        assert err.value.code == "invalid_receipt"


def waiting_for(receipt: Receipt) -> set[bytes]:
    return {e.message_hash for e in receipt.entries}


def test_the_book_checks_a_cumulative_ack_and_keeps_it() -> None:
    good = cumulative(3)
    mine = book()
    assert mine.check_cumulative(cumulative_ack(good), waiting_for(good)) == good
    assert mine.receipts == [good]


def refusal(ack: dict[str, object], waiting: set[bytes], keep: int = 4096) -> str:
    mine = book(keep)
    with pytest.raises(DeviceError) as err:
        mine.check_cumulative(ack, waiting)
    assert len(mine) == 0  # nothing refused is kept
    return err.value.code


def test_a_cumulative_receipt_naming_a_message_not_sent_is_refused() -> None:
    good = cumulative(3)
    some = waiting_for(good) - {good.entries[1].message_hash}
    assert refusal(cumulative_ack(good), some) == "invalid_receipt"
    assert refusal(cumulative_ack(good), set()) == "invalid_receipt"


def test_a_cumulative_ack_that_differs_from_its_receipt_is_refused() -> None:
    good = cumulative(3)
    waiting = waiting_for(good)
    ack = cumulative_ack(good)
    entries = ack["acks"]
    assert isinstance(entries, list)
    assert refusal({**ack, "acks": entries[:2]}, waiting) == "invalid_receipt"  # one fewer
    assert refusal({**ack, "acks": entries[::-1]}, waiting) == "invalid_receipt"  # reordered
    other_seq = [{**entries[0], "last_seq": 99}, *entries[1:]]
    assert refusal({**ack, "acks": other_seq}, waiting) == "invalid_receipt"
    assert refusal({**ack, "acks": "none"}, waiting) == "invalid_receipt"
    assert refusal({**ack, "acks": ["a", *entries[1:]]}, waiting) == "invalid_receipt"
    assert refusal({**ack, "receipt": None}, waiting) == "invalid_receipt"
    assert refusal({**ack, "receipt": good.hex()[:-2]}, waiting) == "invalid_receipt"
    flipped = bytearray(good.encode())
    flipped[100] ^= 1
    assert refusal({**ack, "receipt": flipped.hex()}, waiting) == "invalid_receipt"


def test_the_one_message_check_takes_v1_or_a_v2_of_one_entry() -> None:
    one = cumulative(1)
    entry = one.only
    ack = {"v": 1, "last_seq": entry.last_seq, "message_id": entry.message_hash.hex()}
    assert book().check({**ack, "receipt": one.hex()}, entry.message_hash) == one
    several = cumulative(2)
    with pytest.raises(DeviceError) as err:
        book().check({**ack, "receipt": several.hex()}, several.entries[0].message_hash)
    assert err.value.code == "invalid_receipt"


def test_the_book_is_bounded_by_the_messages_covered() -> None:
    mine = book(keep=5)
    receipts = [cumulative(2, entries=covered(2, at=10 * i)) for i in range(4)]
    for r in receipts:
        mine.check_cumulative(cumulative_ack(r), waiting_for(r))
    assert mine.receipts == receipts[2:]  # 4 messages kept; a third receipt would make 6
    big = cumulative(MAX_COVERED, entries=covered(MAX_COVERED, at=1000))
    mine.check_cumulative(cumulative_ack(big), waiting_for(big))
    assert mine.receipts == [big]  # the newest is kept whatever its size


def test_the_cumulative_packer_refuses_what_no_device_could_parse() -> None:
    one = [(bytes(32), 0, 0)]
    with pytest.raises(DecodeError, match="wrong size"):
        cumulative_signed_bytes(7, bytes(19), 0, bytes(20), one)
    with pytest.raises(DecodeError, match="32 bytes"):
        cumulative_signed_bytes(7, bytes(20), 0, bytes(20), [(bytes(31), 0, 0)])
    with pytest.raises(DecodeError, match="seqs"):
        cumulative_signed_bytes(7, bytes(20), 0, bytes(20), [(bytes(32), 2, 1)])
    with pytest.raises(DecodeError, match="out of range"):
        cumulative_signed_bytes(2**64, bytes(20), 0, bytes(20), one)
    with pytest.raises(DecodeError, match="out of range"):
        Receipt(7, DEVICE, covered(1), -1, MASTER.address)
