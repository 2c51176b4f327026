"""Loopback traffic capture with tshark, and a scan of the captured bytes for plaintext.

Used by ``benchmarks/paper002.py`` (paper 002, section 5.2: "the data captured by the sensors
of the slave device is sent encrypted").  The scan needs no tshark: :func:`read_pcap` parses a
classic libpcap file itself and :func:`scan` looks for byte strings, so both are unit-tested
(``tests/unit/test_capture_scan.py``).

What is searched, per capture (see :func:`scan_capture`):

- the whole pcap file as written (every packet's bytes, headers included), and
- each TCP flow's payload, one direction at a time, concatenated in capture order, so a string
  split across two segments is still found.

A needle marked ``ignore_case`` (hex text) is matched against lower-cased bytes; the others
byte for byte.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Capture",
    "CaptureError",
    "Needle",
    "address_needles",
    "find_tshark",
    "http_messages",
    "locate",
    "read_pcap",
    "scan",
    "scan_capture",
    "tshark_capture",
]

Flow = tuple[str, int, str, int]  # source address, source port, destination address, port


class CaptureError(RuntimeError):
    """tshark is missing, could not start, or wrote no readable capture."""


@dataclass(frozen=True, slots=True)
class Needle:
    """A byte string that must not be on the wire; ``label`` says what it stands for."""

    label: str
    value: bytes
    ignore_case: bool = False

    def __post_init__(self) -> None:
        if not self.value:
            raise ValueError("an empty needle matches everything")


def scan(haystacks: Iterable[bytes], needles: Sequence[Needle]) -> list[Needle]:
    """The needles found in any of ``haystacks`` (in the order given, each at most once)."""
    found: list[Needle] = []
    remaining = list(needles)
    for data in haystacks:
        lowered = data.lower()
        still: list[Needle] = []
        for needle in remaining:
            hit = needle.value.lower() in lowered if needle.ignore_case else needle.value in data
            (found if hit else still).append(needle)
        remaining = still
        if not remaining:
            break
    order = {n: i for i, n in enumerate(needles)}
    return sorted(found, key=order.__getitem__)


def address_needles(label: str, address: str) -> list[Needle]:
    """An Ethereum address as text (with or without ``0x``, any case) and as its 20 raw bytes.

    Matching the 40 hex digits case-insensitively covers the ``0x`` form, the checksummed
    (mixed-case) form, lower case and upper case in one needle.
    """
    digits = address.removeprefix("0x").removeprefix("0X")
    raw = bytes.fromhex(digits)
    return [
        Needle(f"{label} (hex text, any case, with or without 0x)", digits.encode(), True),
        Needle(f"{label} (20 raw bytes)", raw),
    ]


# --- pcap --------------------------------------------------------------------------------------


@dataclass
class Capture:
    """What a pcap file holds: its raw bytes, packet count and each TCP direction's payload."""

    raw: bytes
    packets: int = 0
    packet_bytes: int = 0  # bytes of packet data captured (record headers excluded)
    flows: dict[Flow, bytearray] = field(default_factory=dict)

    @property
    def payload_bytes(self) -> int:
        return sum(len(b) for b in self.flows.values())


_LINK_HEADER = {0: 4, 1: 14, 101: 0, 113: 16, 228: 0, 229: 0, 276: 20}


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside one captured frame, or None for anything else (ARP, ...)."""
    if linktype not in _LINK_HEADER:
        raise CaptureError(f"unsupported pcap link type {linktype}")
    offset = _LINK_HEADER[linktype]
    # Where the link header names the protocol: Ethernet, Linux cooked v1 and v2.
    at = {1: 12, 113: 14, 276: 0}.get(linktype)
    if at is not None and frame[at : at + 2] not in (b"\x08\x00", b"\x86\xdd"):
        return None  # ARP and the like
    return frame[offset:]


def _tcp_segment(packet: bytes) -> tuple[Flow, bytes] | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        if packet[9] != 6:
            return None
        src = ".".join(str(b) for b in packet[12:16])
        dst = ".".join(str(b) for b in packet[16:20])
        segment = packet[ihl : total or len(packet)]
    elif version == 6 and len(packet) >= 40:
        if packet[6] != 6:  # extension headers do not occur on loopback TCP
            return None
        src, dst = packet[8:24].hex(), packet[24:40].hex()
        segment = packet[40 : 40 + int.from_bytes(packet[4:6], "big")]
    else:
        return None
    if len(segment) < 20:
        return None
    sport, dport = struct.unpack("!HH", segment[:4])
    data_offset = (segment[12] >> 4) * 4
    return (src, sport, dst, dport), segment[data_offset:]


def read_pcap(data: bytes) -> Capture:
    """Parse a classic libpcap file (either byte order, micro- or nanosecond stamps)."""
    if len(data) < 24:
        raise CaptureError("not a pcap file: shorter than its global header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise CaptureError("not a classic pcap file (pcapng? write with tshark -F pcap)")
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
    capture = Capture(raw=data)
    pos = 24
    while pos + 16 <= len(data):
        incl_len = struct.unpack(order + "I", data[pos + 8 : pos + 12])[0]
        frame = data[pos + 16 : pos + 16 + incl_len]
        pos += 16 + incl_len
        capture.packets += 1
        capture.packet_bytes += len(frame)
        packet = _ip_payload(linktype, frame)
        tcp = _tcp_segment(packet) if packet is not None else None
        if tcp is not None and tcp[1]:
            capture.flows.setdefault(tcp[0], bytearray()).extend(tcp[1])
    return capture


def scan_capture(capture: Capture, needles: Sequence[Needle]) -> list[Needle]:
    """Needles found in the file's raw bytes or in any reassembled TCP direction."""
    return scan([capture.raw, *(bytes(b) for b in capture.flows.values())], needles)


_REQUEST_LINE = re.compile(rb"(GET|POST|PUT|PATCH|DELETE|HEAD) (/\S*) HTTP/1\.[01]\r\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def http_messages(capture: Capture) -> list[tuple[str, bytes]]:
    """Each HTTP/1.1 request in the capture and the reply paired with it, with a label such as
    ``POST /v1/sessions`` or ``reply to POST /v1/sessions (200)`` (keep-alive: in order)."""
    out: list[tuple[str, bytes]] = []
    for (src, sport, dst, dport), data in capture.flows.items():
        starts = list(_REQUEST_LINE.finditer(data))
        if not starts:
            continue
        requests = []
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(data)
            requests.append((f"{m[1].decode()} {m[2].decode()}", bytes(data[m.start() : end])))
        out += requests
        reverse = capture.flows.get((dst, dport, src, sport), bytearray())
        replies = list(_STATUS_LINE.finditer(reverse))
        for i, (m, (line, _)) in enumerate(zip(replies, requests, strict=False)):
            end = replies[i + 1].start() if i + 1 < len(replies) else len(reverse)
            out.append((f"reply to {line} ({m[1].decode()})", bytes(reverse[m.start() : end])))
    return out


def locate(capture: Capture, needle: Needle) -> list[str]:
    """Labels of the HTTP messages (see :func:`http_messages`) that contain ``needle``."""
    return [label for label, data in http_messages(capture) if scan([data], [needle])]


# --- tshark ------------------------------------------------------------------------------------


def find_tshark() -> str | None:
    return shutil.which("tshark")


@dataclass
class Running:
    """A capture in progress; ``capture`` and ``reported`` are filled in once it has stopped."""

    path: Path
    capture: Capture | None = None
    reported: str = ""  # tshark's own closing line, e.g. "212 packets captured"


@contextlib.contextmanager
def tshark_capture(
    path: Path, port: int, *, interface: str = "lo", start_timeout_s: float = 30.0
) -> Iterator[Running]:
    """Capture TCP traffic to/from ``port`` on ``interface`` into ``path`` (classic pcap).

    Returns once tshark reports that it is capturing; on exit, waits briefly for the last
    packets, stops tshark with SIGINT and parses the file.
    """
    tshark = find_tshark()
    if tshark is None:
        raise CaptureError(
            "tshark is not installed (apt-get install tshark): no traffic capture was made"
        )
    args = [tshark, "-i", interface, "-f", f"tcp port {port}", "-F", "pcap", "-w", str(path)]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    assert proc.stderr is not None
    lines: list[str] = []
    started = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.strip())
            if line.startswith("Capturing on"):
                started.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + start_timeout_s
    while not started.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            reader.join(timeout=1)
            detail = "; ".join(line for line in lines if "dangerous" not in line)
            raise CaptureError(f"tshark did not start capturing: {detail or 'no output'}")
    running = Running(path)
    try:
        yield running
    finally:
        time.sleep(0.5)  # the last acknowledgement's packets
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=2)
    running.reported = next((line for line in reversed(lines) if "captured" in line), "")
    if not path.exists():
        raise CaptureError(f"tshark wrote no capture file ({running.reported or 'no output'})")
    running.capture = read_pcap(path.read_bytes())
