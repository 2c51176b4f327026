"""The plaintext scan behind paper 002's traffic analysis (benchmarks/capture.py); no tshark."""

from __future__ import annotations

import os
import struct

import pytest
from benchmarks.capture import (
    Needle,
    address_needles,
    locate,
    read_pcap,
    scan,
    scan_capture,
)

VALUE = Needle('"value":97.3', b'"value":97.3')
ADDRESS = "0x5FB6a080242bb23D097252883179a738E5027FB4"


def test_a_plaintext_needle_is_found() -> None:
    wire = os.urandom(200) + b'{"seq":4,"vital":"spo2","value":97.3,"unit":"%"}' + os.urandom(200)
    assert scan([wire], [VALUE]) == [VALUE]


def test_bytes_without_the_needle_pass() -> None:
    wire = b'{"seq":4,"vital":"spo2","value":97.4}' + bytes(range(256))
    assert scan([wire], [VALUE]) == []


def test_found_needles_are_reported_once_in_the_given_order() -> None:
    a, b, c = Needle("a", b"alpha"), Needle("b", b"bravo"), Needle("c", b"charlie")
    assert scan([b"charlie", b"alpha alpha"], [a, b, c]) == [a, c]


@pytest.mark.parametrize(
    "text",
    [
        ADDRESS,  # checksummed, with 0x
        ADDRESS.lower(),
        ADDRESS[2:].upper(),  # upper case, no 0x
        ADDRESS[2:].lower(),
    ],
)
def test_an_address_is_found_in_any_case_with_or_without_0x(text: str) -> None:
    needles = address_needles("patient", ADDRESS)
    found = scan([b'{"patient":"' + text.encode() + b'"}'], needles)
    assert [n.label for n in found] == ["patient (hex text, any case, with or without 0x)"]


def test_an_address_is_found_as_raw_bytes() -> None:
    needles = address_needles("patient", ADDRESS)
    found = scan([b"\x00" + bytes.fromhex(ADDRESS[2:]) + b"\x00"], needles)
    assert [n.label for n in found] == ["patient (20 raw bytes)"]


def test_an_empty_needle_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Needle("nothing", b"")


# --- a hand-built pcap: Ethernet (as tshark writes the loopback interface), IPv4, TCP ---------


def _packet(payload: bytes, sport: int, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, bytes([127, 0, 0, 1]),
        bytes([127, 0, 0, 1]),
    ) + tcp  # fmt: skip
    return bytes(12) + b"\x08\x00" + ip


def _pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame
    return out


def test_a_needle_split_across_two_segments_is_found_after_reassembly() -> None:
    first, second = b'POST /v1/telemetry HTTP/1.1\r\n\r\n{"value":9', b"7.3}"
    capture = read_pcap(_pcap([_packet(first, 40000, 8700), _packet(second, 40000, 8700)]))
    assert capture.packets == 2
    assert capture.payload_bytes == len(first) + len(second)
    assert scan([capture.raw], [VALUE]) == []  # not in any one packet
    assert scan_capture(capture, [VALUE]) == [VALUE]


def test_an_encrypted_capture_passes_and_a_finding_is_located() -> None:
    request = b"POST /v1/telemetry HTTP/1.1\r\ncontent-length: 64\r\n\r\n" + os.urandom(64)
    reply = b'HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{"v":1}'
    clean = read_pcap(_pcap([_packet(request, 40000, 8700), _packet(reply, 8700, 40000)]))
    assert scan_capture(clean, [VALUE, *address_needles("patient", ADDRESS)]) == []

    leaky = read_pcap(_pcap([_packet(request + b'"value":97.3', 40000, 8700)]))
    assert scan_capture(leaky, [VALUE]) == [VALUE]
    assert locate(leaky, VALUE) == ["POST /v1/telemetry"]


def test_a_reply_is_labelled_with_its_request() -> None:
    request = b'POST /v1/sessions HTTP/1.1\r\n\r\n{"object_id":1}'
    reply = b'HTTP/1.1 200 OK\r\n\r\n{"gateway":"' + ADDRESS.encode() + b'"}'
    capture = read_pcap(_pcap([_packet(request, 40000, 8700), _packet(reply, 8700, 40000)]))
    needle = address_needles("gateway", ADDRESS)[0]
    assert locate(capture, needle) == ["reply to POST /v1/sessions (200)"]
