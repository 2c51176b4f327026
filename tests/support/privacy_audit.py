"""Privacy audit of the chain: every calldata, event and storage write, searched for health data.

Issue 6 asks for proof that the contracts never put a vital value, a unit, a patient identifier
or any plaintext on chain (docs/ledger-privacy.md says they do not).  This module is the
scanner; ``tests/integration/test_privacy_audit.py`` runs it over a demo-sized run on anvil and
first proves, on planted leaks, that it can fail.

What is collected (:func:`collect`), for every transaction of a block range, over raw JSON-RPC:

- **calldata**: the transaction's ``input`` (for a contract creation, the init code and its
  constructor arguments);
- **event**: each log of the receipt, its topics and its data;
- **storage**: each storage slot the transaction changed, key and new value.

Storage writes come from ``debug_traceTransaction`` with geth's ``prestateTracer`` in
``diffMode``: the ``post`` side lists, per account, exactly the slots whose value changed and
their final value.  anvil (1.7, as started by ``vitalchain.services.anvil.run_anvil``) supports
that tracer, so it is what the audit uses.  Slots reset to zero appear only in ``pre``; a zero
carries nothing, so they are not collected.  The default struct logger is kept as a fallback for
nodes without the prestate tracer (``tracer="structlog"``: the key and value of each ``SSTORE``
are the top two stack items), but on anvil it is no fallback at all: unless anvil was started
with ``--steps-tracing`` it answers with an empty ``structLogs`` list, which would make the
storage audit pass while having looked at nothing.  The fallback therefore refuses an empty step
list for a transaction that ran code, and reports every ``SSTORE`` executed, including ones a
revert later undid (an over-approximation, which is the safe side for an audit).  A contract's
runtime code is not collected separately: it is part of the creation calldata.

What is searched for (:class:`Needles`), and why in these forms:

- **vital values**: each value's ASCII decimal forms (``b"97.37"``: JSON, CSV or a Solidity
  ``string`` would hold these), its IEEE-754 double (big- and little-endian), its on-chain
  fixed-point integer (:func:`vitalchain.vitals.to_fixed`) as a 32-byte big-endian two's
  complement ABI word, and that integer as a packed ``int32`` inside a storage slot.
  Thresholds are legitimately on chain in this fixed point, so a run under audit must use
  readings that cannot equal a threshold: the demo's readings all have an odd hundredths digit
  while thresholds are whole numbers (see ``distinctive_value`` in the test).
- **units**: each UCUM unit of the vitals.  ``mm[Hg]``, ``/min`` and ``mg/dL`` are searched as
  they are.  ``%`` (1 byte) and ``Cel`` (3 bytes) are too short to search bare: a given 3-byte
  string turns up by chance once in 2**24 offsets, and the demo run alone writes some 40 kB of
  bytecode, hashes, keys and signatures, so a bare ``Cel`` would raise a false alarm in about
  one run in four hundred (more as runs grow), and ``%`` would match everywhere.  ``"%"`` as a
  JSON string is still 3 bytes, so short units are searched in the forms they would actually
  leak in: the JSON member as the device writes it (``"unit":"%"``), a JSON string where that
  is at least 4 bytes (``"Cel"``), the ABI encoding of a ``string``/``bytes`` argument (length
  word, then the padded text: 64 specific bytes), and, from 3 bytes up, a left-aligned
  ``bytes32``.  (Not for ``%``: ``0x25`` and 31 zero bytes is what the padded last word of a
  33-byte key image looks like one time in 256.)
- **patient identifiers**: each name and medical record number in UTF-8 (ASCII is the same
  bytes), lower and upper case, with accents stripped, and each name part of 5 bytes or more.
- **plaintext**: every data-message payload a device signed (the whole JSON), texts that must
  only be hashed on chain (a break-glass reason), and markers of plaintext telemetry or FHIR:
  the payload's JSON keys (``"readings"``, ``"vital"``, ``"value"``, ``"unit"``, ``{"v":``, ...),
  the vitals' short names in quotes and their LOINC codes.

How (:func:`find_leaks`): byte needles are searched at every offset of each field (a topic, the
log data, a slot key, a slot value, the calldata), never across two fields.  The fixed-point ABI
word is compared only at 32-byte-aligned positions (offset 4 of calldata, after the selector;
offset 0 of topics, log data and storage), except in creation calldata, whose alignment is
unknown; searched at every offset, a word of 30 zero bytes and two value bytes would also match
where a zero word is followed by a random one (the ``index`` 0 of the first ``Anchored`` event
before its root), one time in 65536 per needle.  The packed ``int32`` is searched at every byte
offset of storage values only, since Solidity packs struct members at byte granularity inside a
slot while calldata and events always carry full words.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from web3 import Web3
from web3.types import RPCEndpoint

from vitalchain.vitals import Vital, to_fixed

__all__ = [
    "PRESTATE",
    "STRUCT_LOGGER",
    "AuditError",
    "ChainWrite",
    "Leak",
    "Needle",
    "Needles",
    "Segment",
    "collect",
    "file_writes",
    "find_leaks",
    "postgres_tables",
    "row_writes",
    "sqlite_tables",
    "store_needles",
]

Kind = Literal["calldata", "event", "storage", "file", "row"]
Match = Literal["raw", "word", "lane"]
Category = Literal["value", "unit", "identifier", "plaintext"]
Tracer = Literal["auto", "prestate", "structlog"]

PRESTATE = "prestateTracer"
STRUCT_LOGGER = "structLogger"
MIN_RAW = 4  # shorter byte strings match random data too often to mean anything
WORD = 32

_PRESTATE_CONFIG = {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}
_STRUCT_CONFIG = {"disableMemory": True, "disableStack": False, "disableStorage": True}
_CALLS_INTO = {"CALL", "STATICCALL"}  # the callee's storage; DELEGATECALL/CALLCODE keep ours
_CALLS_KEEPING = {"DELEGATECALL", "CALLCODE"}
_CREATES = {"CREATE", "CREATE2"}


class AuditError(Exception):
    """The node cannot give what the audit needs (an RPC error, or no execution steps)."""


# -- what was written ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One field of a write: ``data[start:end]``; needles never match across two fields.

    ``align`` is the offset of the first ABI word in the field (``None``: unknown, search every
    offset); ``packed`` marks a storage value, where struct members share one slot.
    """

    name: str
    start: int
    end: int
    align: int | None = 0
    packed: bool = False


@dataclass(frozen=True, slots=True)
class ChainWrite:
    """Bytes one transaction put on chain: its calldata, one log, or one storage slot."""

    kind: Kind
    tx_hash: str  # 0x-prefixed
    address: str  # checksummed: the called/created contract, the log's emitter, the slot's owner
    data: bytes
    block_number: int
    segments: tuple[Segment, ...]
    label: str = ""  # selector, topic0 or slot key, for humans
    source: str = ""  # for storage: the tracer that reported it

    def __str__(self) -> str:
        return f"{self.kind} of {self.tx_hash} at {self.address} ({self.label})"


def _hex_bytes(value: str | None) -> bytes:
    text = (value or "0x").removeprefix("0x")
    return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)


def _word(value: str) -> bytes:
    return _hex_bytes(value).rjust(WORD, b"\0")


class _Rpc:
    """Raw JSON-RPC to a Web3 provider or a URL; errors raise :class:`AuditError`."""

    def __init__(self, target: Web3 | str) -> None:
        self._w3 = target if isinstance(target, Web3) else None
        self._http = httpx.Client(timeout=60) if isinstance(target, str) else None
        self._url = target if isinstance(target, str) else ""
        self._id = 0

    def __call__(self, method: str, params: Sequence[Any]) -> Any:
        if self._w3 is not None:
            response: Any = self._w3.provider.make_request(RPCEndpoint(method), list(params))
        else:
            assert self._http is not None
            self._id += 1
            body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
            response = self._http.post(self._url, json=body).json()
        if response.get("error"):
            raise AuditError(f"{method}: {response['error']}")
        return response["result"]

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def collect(
    w3_or_url: Web3 | str, from_block: int, to_block: int, *, tracer: Tracer = "auto"
) -> list[ChainWrite]:
    """Every calldata, log and storage write of the transactions in blocks
    ``from_block..to_block`` (inclusive), in chain order.

    ``tracer="auto"`` uses the prestate tracer and falls back to the struct logger only if the
    node refuses the prestate tracer; ``"prestate"`` and ``"structlog"`` force one.
    """
    rpc = _Rpc(w3_or_url)
    mode: Tracer = tracer
    writes: list[ChainWrite] = []
    try:
        for number in range(from_block, to_block + 1):
            block = rpc("eth_getBlockByNumber", [hex(number), True])
            if block is None:
                raise AuditError(f"block {number} does not exist")
            for tx in block["transactions"]:
                receipt = rpc("eth_getTransactionReceipt", [tx["hash"]])
                writes.append(_calldata(tx, receipt, number))
                writes.extend(_events(tx, receipt, number))
                if mode == "auto":
                    try:
                        writes.extend(_storage_prestate(rpc, tx, number))
                        mode = "prestate"
                    except AuditError:
                        mode = "structlog"
                    else:
                        continue
                if mode == "prestate":
                    writes.extend(_storage_prestate(rpc, tx, number))
                else:
                    writes.extend(_storage_structlog(rpc, tx, receipt, number))
    finally:
        rpc.close()
    return writes


def _calldata(tx: dict[str, Any], receipt: dict[str, Any], number: int) -> ChainWrite:
    data = _hex_bytes(tx.get("input") or tx.get("data"))
    creation = tx.get("to") is None
    address = receipt.get("contractAddress") if creation else tx["to"]
    return ChainWrite(
        kind="calldata",
        tx_hash=tx["hash"],
        address=Web3.to_checksum_address(address) if address else "",
        data=data,
        block_number=number,
        segments=(Segment("input", 0, len(data), align=None if creation else 4),),
        label="create" if creation else "0x" + data[:4].hex(),
    )


def _events(tx: dict[str, Any], receipt: dict[str, Any], number: int) -> Iterator[ChainWrite]:
    for log in receipt.get("logs", []):
        topics = [_word(t) for t in log["topics"]]
        body = _hex_bytes(log["data"])
        segments = [Segment(f"topic{i}", WORD * i, WORD * (i + 1)) for i in range(len(topics))]
        segments.append(Segment("data", WORD * len(topics), WORD * len(topics) + len(body)))
        yield ChainWrite(
            kind="event",
            tx_hash=tx["hash"],
            address=Web3.to_checksum_address(log["address"]),
            data=b"".join(topics) + body,
            block_number=number,
            segments=tuple(segments),
            label="0x" + topics[0].hex() if topics else "anonymous",
        )


def _slot(
    tx_hash: str, address: str, key: bytes, value: bytes, number: int, source: str
) -> ChainWrite:
    return ChainWrite(
        kind="storage",
        tx_hash=tx_hash,
        address=Web3.to_checksum_address(address),
        data=key + value,
        block_number=number,
        segments=(Segment("slot key", 0, WORD), Segment("slot value", WORD, 2 * WORD, packed=True)),
        label="0x" + key.hex(),
        source=source,
    )


def _storage_prestate(rpc: _Rpc, tx: dict[str, Any], number: int) -> list[ChainWrite]:
    trace = rpc("debug_traceTransaction", [tx["hash"], _PRESTATE_CONFIG])
    if not isinstance(trace, dict) or "post" not in trace:
        raise AuditError(f"the prestate tracer gave no diff for {tx['hash']}")
    return [
        _slot(tx["hash"], address, _word(key), _word(value), number, PRESTATE)
        for address, account in sorted(trace["post"].items())
        for key, value in sorted((account.get("storage") or {}).items())
    ]


def _storage_structlog(
    rpc: _Rpc, tx: dict[str, Any], receipt: dict[str, Any], number: int
) -> list[ChainWrite]:
    """Every SSTORE the default tracer saw: key = top of stack, value = the item below it."""
    trace = rpc("debug_traceTransaction", [tx["hash"], _STRUCT_CONFIG])
    steps: list[dict[str, Any]] = trace.get("structLogs") or []
    creation = tx.get("to") is None
    target = (receipt.get("contractAddress") if creation else tx["to"]) or "0x" + bytes(20).hex()
    if not steps:
        ran_code = creation or _hex_bytes(rpc("eth_getCode", [target, hex(number)])) != b""
        if ran_code:
            raise AuditError(
                f"the node traced no steps of {tx['hash']}, which ran code "
                "(anvil must be started with --steps-tracing for the struct logger)"
            )
        return []
    contexts: list[str] = [str(target)]  # storage owner per call depth (1-based depth - 1)
    pending = contexts[0]
    writes: list[ChainWrite] = []
    previous_depth = 1
    for step in steps:
        depth = int(step["depth"])
        if depth > previous_depth:
            contexts = [*contexts[: depth - 1], pending]
        elif depth < previous_depth:
            contexts = contexts[:depth]
        previous_depth = depth
        current = contexts[depth - 1]
        stack: list[str] = step.get("stack") or []
        op = step["op"]
        if op == "SSTORE":
            key, value = _word(stack[-1]), _word(stack[-2])
            writes.append(_slot(tx["hash"], current, key, value, number, STRUCT_LOGGER))
        elif op in _CALLS_INTO:
            pending = "0x" + _word(stack[-2])[-20:].hex()
        elif op in _CALLS_KEEPING:
            pending = current
        elif op in _CREATES:
            pending = "0x" + bytes(20).hex()  # unknown until the creation returns
    return writes


# -- what must never appear ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Needle:
    category: Category
    label: str  # what it stands for: "spo2 reading 88.41", "patient name", ...
    form: str  # how it is encoded: "decimal", "abi int256", "utf-8", ...
    pattern: bytes
    match: Match = "raw"

    def __str__(self) -> str:
        return f"{self.category} {self.label!r} as {self.form} ({self.pattern[:40]!r})"


# The data message's JSON keys (docs/spec/telemetry.md) and FHIR's: plaintext telemetry markers.
_MARKERS = (
    b'"readings"',
    b'"vital"',
    b'"value"',
    b'"unit"',
    b'{"v":',
    b'"sent_at"',
    b'"seq"',
    b'"resourceType"',
    b'"Observation"',
    b'"valueQuantity"',
)


class Needles:
    """Builds the byte patterns that must never be on chain; chain the adders, then iterate."""

    def __init__(self) -> None:
        self._needles: dict[tuple[Match, bytes], Needle] = {}

    def __iter__(self) -> Iterator[Needle]:
        return iter(self._needles.values())

    def __len__(self) -> int:
        return len(self._needles)

    def _add(
        self, category: Category, label: str, form: str, pattern: bytes, match: Match = "raw"
    ) -> None:
        if match == "raw" and len(pattern) < MIN_RAW:
            raise ValueError(f"{pattern!r} is too short to search for: it would match by chance")
        self._needles.setdefault((match, pattern), Needle(category, label, form, pattern, match))

    def value(self, vital: Vital, value: float) -> Needles:
        """A vital value: decimal text, IEEE-754 double, fixed-point ABI word and packed int32."""
        label = f"{vital.info.short} reading {value!r}"
        for text in dict.fromkeys((repr(value), f"{value:.2f}", json.dumps(value))):
            self._add("value", label, "decimal", text.encode())
        self._add("value", label, "float64 big-endian", struct.pack(">d", value))
        self._add("value", label, "float64 little-endian", struct.pack("<d", value))
        fixed = to_fixed(value)
        self._add("value", label, "abi int256", fixed.to_bytes(WORD, "big", signed=True), "word")
        self._add("value", label, "packed int32", fixed.to_bytes(4, "big", signed=True), "lane")
        return self

    def units(self, vitals: Iterable[Vital] = tuple(Vital)) -> Needles:
        """Every UCUM unit of ``vitals``, in the forms that are long enough to mean something."""
        for unit in dict.fromkeys(v.info.unit for v in vitals):
            text = unit.encode()
            label = f"unit {unit}"
            if len(text) >= MIN_RAW:
                self._add("unit", label, "text", text)
            if len(text) + 2 >= MIN_RAW:
                self._add("unit", label, "json string", b'"' + text + b'"')
            self._add("unit", label, "json member", b'"unit":"' + text + b'"')
            self._add("unit", label, "json member", b'"unit": "' + text + b'"')
            self._add("unit", label, "abi string", _abi_string(text))
            if len(text) >= 3:
                self._add("unit", label, "bytes32", text.ljust(WORD, b"\0"), "word")
        return self

    def identifier(self, text: str, label: str) -> Needles:
        """A name or record number: UTF-8 as given, lower, upper, unaccented, and name parts."""
        folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        forms = {"utf-8": text, "lower case": text.lower(), "upper case": text.upper()}
        forms["unaccented"] = folded
        for form, variant in forms.items():
            if len(variant.encode()) >= MIN_RAW:
                self._add("identifier", label, form, variant.encode())
        for part in text.replace("-", " ").split():
            if len(part.encode()) >= 5 and part != text:
                self._add("identifier", label, f"part {part!r}", part.encode())
        return self

    def plaintext(self, data: bytes, label: str) -> Needles:
        """Bytes that must never be on chain whole (a signed payload, a text to be hashed)."""
        self._add("plaintext", label, "exact", data)
        return self

    def markers(self) -> Needles:
        """Plaintext telemetry and FHIR markers: JSON keys, quoted vital names, LOINC codes."""
        for marker in _MARKERS:
            self._add("plaintext", "telemetry/FHIR JSON", "marker", marker)
        for vital in Vital:
            short = b'"' + vital.info.short.encode() + b'"'
            self._add("plaintext", f"vital name {vital.info.short}", "json string", short)
            self._add(
                "plaintext", f"LOINC code of {vital.info.short}", "text", vital.info.loinc.encode()
            )
        return self


def _abi_string(text: bytes) -> bytes:
    """The tail of an ABI-encoded ``string``/``bytes``: length word, then the padded bytes."""
    padded = text.ljust(-(-len(text) // WORD) * WORD, b"\0")
    return len(text).to_bytes(WORD, "big") + padded


# -- the search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leak:
    write: ChainWrite
    needle: Needle
    offset: int  # into write.data
    location: str = ""  # the segment's name

    def __str__(self) -> str:
        return f"{self.needle} in {self.write}, {self.location} at byte {self.offset}"


def _find_all(haystack: bytes, needle: bytes) -> Iterator[int]:
    at = haystack.find(needle)
    while at >= 0:
        yield at
        at = haystack.find(needle, at + 1)


def _positions(chunk: bytes, segment: Segment, needle: Needle) -> Iterator[int]:
    if needle.match == "raw":
        yield from _find_all(chunk, needle.pattern)
    elif needle.match == "word":
        if segment.align is None:
            yield from _find_all(chunk, needle.pattern)
            return
        for at in range(segment.align, len(chunk) - WORD + 1, WORD):
            if chunk[at : at + WORD] == needle.pattern:
                yield at
    elif segment.packed:  # "lane": packed members of a storage slot, at any byte
        yield from _find_all(chunk, needle.pattern)


def find_leaks(writes: Iterable[ChainWrite], needles: Iterable[Needle]) -> list[Leak]:
    """Every place a needle occurs in a write, field by field (see the module docstring)."""
    patterns = list(needles)
    leaks: list[Leak] = []
    for write in writes:
        for segment in write.segments:
            chunk = write.data[segment.start : segment.end]
            for needle in patterns:
                for at in _positions(chunk, segment, needle):
                    leaks.append(Leak(write, needle, segment.start + at, segment.name))
    return leaks


# -- the store: every file and every table of a store backend -------------------------------------
#
# Issue 12 item 11 asks the same of the store that issue 6 asked of the chain: what providers
# read (SQLite + block files, or PostgreSQL) holds ciphertext blocks, key stanzas, anchors and
# nonces only, and the gateway's journal forgets what is anchored.  The same needles are
# searched in the same way, as raw bytes: each file whole (a database file holds its rows'
# values as they are stored: text as UTF-8, a REAL as a big-endian IEEE-754 double), and each
# value of each table row as read back through SQL.  The chain-specific forms (ABI words, packed
# storage lanes, ABI strings) are left out: a database file is full of zero runs, where a word
# of 30 zero bytes and two value bytes would turn up by chance.


def store_needles(needles: Iterable[Needle]) -> list[Needle]:
    """The needles that mean something in a file or a row: raw byte strings, minus ABI forms."""
    return [n for n in needles if n.match == "raw" and n.form != "abi string"]


def _one(kind: Kind, label: str, data: bytes) -> ChainWrite:
    return ChainWrite(
        kind, label, "", data, 0, (Segment(kind, 0, len(data), align=None),), label=label
    )


def file_writes(paths: Iterable[Any]) -> list[ChainWrite]:
    """Each file (a ``pathlib.Path``) under the given files and folders, whole."""
    from pathlib import Path

    writes = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        writes.extend(_one("file", str(p), p.read_bytes()) for p in files)
    return writes


def _value_bytes(value: Any) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, bytes | bytearray | memoryview):
        return [bytes(value)]
    if isinstance(value, float):
        return [repr(value).encode(), struct.pack(">d", value), struct.pack("<d", value)]
    return [str(value).encode()]


def row_writes(database: str, tables: dict[str, list[tuple[Any, ...]]]) -> list[ChainWrite]:
    """Each row of each table as one write, each column value its own segment."""
    writes = []
    for table, rows in tables.items():
        for i, row in enumerate(rows):
            parts = [b for value in row for b in _value_bytes(value)]
            data, segments, at = b"", [], 0
            for n, part in enumerate(parts):
                segments.append(Segment(f"value {n}", at, at + len(part), align=None))
                data += part
                at += len(part)
            label = f"{database}:{table}#{i}"
            writes.append(ChainWrite("row", label, "", data, 0, tuple(segments), label=label))
    return writes


def sqlite_tables(path: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite database, read-only."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: db.execute(f'SELECT * FROM "{name}"').fetchall() for name in names}
    finally:
        db.close()


def postgres_tables(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database's public schema."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return {
            name: conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(name))).fetchall()
            for name in names
        }
