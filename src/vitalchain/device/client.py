"""The device SDK: a wearable's side of onboarding and telemetry.

A device owns a secp256k1 key and an object ID.  ``onboard`` runs paper 002's four steps
against a gateway (docs/spec/onboarding.md); ``prepare`` builds a signed, encrypted data
message (docs/spec/telemetry.md); ``send`` posts it over HTTP.  MQTT publishing lives in
:mod:`vitalchain.device.mqtt`.

A session key carries a bounded number of messages (docs/spec/aead.md, "Per-key limits").
The client counts what it seals and re-keys by itself (``rekey``, docs/spec/onboarding.md
section 5) once ``rekey_margin`` messages or fewer are left, and when the gateway answers
``key_exhausted``; a message sealed under the old key is sealed again under the new one
(``reseal``), its signed payload unchanged.  A device that persists its session across
restarts must persist the key's count too (``usage``; ``attach(..., used=...)``), or its
count restarts at zero and only the gateway's own count stops it.

Every acknowledgement carries the gateway's receipt (docs/spec/receipt.md).  The client
checks it against the group's master as the chain knows it (:class:`GroupMasters`: every
address that has been master, and until when) and keeps the verified ones in a bounded,
rotating :class:`ReceiptBook`.  A message counts as delivered only once its receipt verified:
an acknowledgement whose receipt is missing, malformed, for another message, or signed by
anyone but a master of the time is refused ``invalid_receipt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from vitalchain.crypto import ring
from vitalchain.crypto.aead import DEFAULT_SUITE, Aead, KeyExhausted, Suite, Usage, UsageLimit
from vitalchain.crypto.envelope import Envelope
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256, message_digest
from vitalchain.crypto.ring import RingProof
from vitalchain.edge.client import raise_for_refusal
from vitalchain.edge.codes import Refused
from vitalchain.errors import DecodeError, DecryptionError, InvalidSignature, VitalchainError
from vitalchain.ledger.eip712 import Domain, request_digest
from vitalchain.ledger.masters import GroupMasters, receipt_signer
from vitalchain.vitals import Vital, by_class
from vitalchain.wire import onboarding
from vitalchain.wire.alert import alert_context
from vitalchain.wire.bands import Bands
from vitalchain.wire.onboarding import (
    AAD_ASSOCIATION,
    AAD_ASSOCIATION_REQUEST,
    AAD_SESSION_KEY,
    AAD_TICKET,
    AAD_TICKET_REQUEST,
    REKEY_CONTEXT,
    REKEY_REQUEST_CONTEXT,
    SESSION_CONTEXT,
)
from vitalchain.wire.receipt import Receipt
from vitalchain.wire.telemetry import (
    HEADER_SIZE,
    MESSAGE_HEADER,
    READING_CONTEXT,
    RING_HEADER,
    Payload,
    ReadingItem,
)

if TYPE_CHECKING:
    from vitalchain.ledger.ledger import Ledger

__all__ = [
    "RECEIPTS_KEPT",
    "DeviceClient",
    "DeviceError",
    "Onboarded",
    "ReceiptBook",
]

# Re-key this many messages before the key's limit: room for a failed attempt to be retried
# with the next message while the old key still seals.
REKEY_MARGIN = 1024
# Verified receipts a client keeps in memory, the oldest dropped first (ReceiptBook).
RECEIPTS_KEPT = 4096
# How long a device trusts the bands it learned, and a ring it fetched: a threshold change
# reaches it within BANDS_MAX_AGE_S even if no acknowledgement says so, and a ring stops
# naming revoked devices within RING_MAX_AGE_S.
BANDS_MAX_AGE_S = 300.0
RING_MAX_AGE_S = 600.0
# How long a device sends its HTTP telemetry to the gateway's own URL after the ingest
# workers' port (association v2) refused a connection, before trying that port again.
TELEMETRY_RETRY_S = 60.0
RING_OTHERS = 8  # the gateway's default alert_ring_k: a ring of 9
# How long the masters read from the chain are trusted before they are read again: a
# rotation is seen within this time (0: read the chain for every receipt).


class DeviceError(VitalchainError):
    """A refusal from the gateway (``code`` is the gateway's) or a failed check on the device."""

    code = "device_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The gateway's JSON answer; a refusal (decoded by the edge) raises ``DeviceError``."""
    try:
        data = raise_for_refusal(response, Refused)
    except Refused as exc:
        raise DeviceError(exc.message, code=exc.code, status=exc.status) from None
    if not isinstance(data, dict):
        raise DeviceError("the gateway's answer is not a JSON object", code="not_a_gateway")
    return data


def _invalid_receipt(why: str) -> DeviceError:
    return DeviceError(
        f"the acknowledgement's receipt does not verify: {why}", code="invalid_receipt"
    )


class ReceiptBook:
    """One device's verified receipts, the newest of them (a rotating buffer).

    A receipt is checked against the chain's masters (``masters``) or, for a client built
    without a chain, against the one master address it learned at onboarding (``master``;
    no rotation is known then).  With neither, no receipt verifies.

    The book is bounded by the messages its receipts cover, ``keep`` at most: a cumulative
    receipt (v2, receipt.md) of 64 messages weighs as much as 64 single ones, so memory stays
    what it was whichever form the gateway sends.  The oldest receipts go first; the newest
    is always kept."""

    def __init__(
        self,
        group_id: int,
        device: str,
        *,
        masters: GroupMasters | None = None,
        master: str | None = None,
        keep: int = RECEIPTS_KEPT,
    ) -> None:
        self.group_id = group_id
        self.device = device
        self.masters = masters
        self.master = master
        self.keep = keep
        self._kept: deque[Receipt] = deque()
        self._covered = 0  # messages the kept receipts cover
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    @property
    def receipts(self) -> list[Receipt]:
        """The kept receipts, oldest first (covering at most ``keep`` messages)."""
        with self._lock:
            return list(self._kept)

    def verify(self, receipt: Receipt) -> str:
        """The signer of ``receipt`` if it was the group's master when the receipt says it
        stored the messages; else ``DeviceError`` ``invalid_receipt``."""
        if receipt.group_id != self.group_id or receipt.device != self.device:
            raise _invalid_receipt("it is for another group or device")
        try:
            return receipt_signer(receipt, self.masters, self.master)
        except VitalchainError as exc:
            raise DeviceError(exc.message, code=exc.code) from None

    def check(self, ack: Mapping[str, Any], message_hash: bytes) -> Receipt:
        """Verify the receipt of ``ack``, the acknowledgement of the data message whose
        SHA-256 the device computed over the bytes it sent (``message_hash``), and keep it:
        it must cover that one message, with the ack's last seq (a v1 receipt, or a v2 one
        of one entry).  ``invalid_receipt`` otherwise."""
        receipt = self._parsed(ack)
        if len(receipt.entries) != 1 or receipt.entries[0].message_hash != message_hash:
            raise _invalid_receipt("it is for another message")
        if receipt.entries[0].last_seq != ack.get("last_seq"):
            raise _invalid_receipt("it covers other seqs than the acknowledgement")
        self.verify(receipt)
        self._keep(receipt)
        return receipt

    def check_cumulative(
        self, ack: Mapping[str, Any], waiting: set[bytes] | frozenset[bytes]
    ) -> Receipt:
        """Verify the receipt of ``ack``, a cumulative acknowledgement (``"v": 2``,
        telemetry.md), and keep it.  Its entries must be exactly the receipt's, in order
        (each ``message_id`` a covered message's SHA-256, with its last seq), and every
        covered message one the device sent and is still waiting for (``waiting``, hashes it
        computed over what it published): a receipt naming anything else proves nothing this
        device can use.  ``invalid_receipt`` otherwise, and nothing of it is kept."""
        receipt = self._parsed(ack)
        entries = ack.get("acks")
        if not isinstance(entries, list) or len(entries) != len(receipt.entries):
            raise _invalid_receipt("it covers other messages than the acknowledgement")
        for entry, covered in zip(entries, receipt.entries, strict=True):
            if not isinstance(entry, Mapping) or entry.get("message_id") != (
                covered.message_hash.hex()
            ):
                raise _invalid_receipt("it covers other messages than the acknowledgement")
            if entry.get("last_seq") != covered.last_seq:
                raise _invalid_receipt("it covers other seqs than the acknowledgement")
        for covered in receipt.entries:
            if covered.message_hash not in waiting:
                raise _invalid_receipt(
                    f"it names message {covered.message_hash.hex()[:16]}…, which this device "
                    "did not send or is not waiting for"
                )
        self.verify(receipt)
        self._keep(receipt)
        return receipt

    def _keep(self, receipt: Receipt) -> None:
        with self._lock:
            self._kept.append(receipt)
            self._covered += len(receipt.entries)
            while self._covered > self.keep and len(self._kept) > 1:
                self._covered -= len(self._kept.popleft().entries)

    @staticmethod
    def _parsed(ack: Mapping[str, Any]) -> Receipt:
        """The receipt an acknowledgement carries, parsed (either version);
        ``invalid_receipt`` if it is missing or malformed."""
        try:
            return Receipt.from_hex(ack.get("receipt"))
        except DecodeError as exc:
            raise _invalid_receipt(exc.message) from None


@dataclass(frozen=True, slots=True)
class Onboarded:
    session_id: bytes
    group_id: int
    gateway: str
    device: str
    block_number: int
    mqtt: onboarding.MqttGrant | None
    telemetry_url: str | None = None  # the gateway's ingest workers' port (association v2)


class DeviceClient:
    def __init__(
        self,
        key: PrivateKey,
        object_id: int,
        *,
        suite: Suite = DEFAULT_SUITE,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        first_seq: int = 0,
        key_limit: UsageLimit | None = None,
        rekey_margin: int = REKEY_MARGIN,
        chain: Ledger | None = None,
        receipts_kept: int = RECEIPTS_KEPT,
        anonymity: bool = True,
        ring_others: int = RING_OTHERS,
    ) -> None:
        """``key_limit`` overrides the suite's per-key limit (tests); the client re-keys when
        ``rekey_margin`` messages or fewer are left under the key (at most a sixteenth of the
        limit, so a small test limit re-keys only once it is spent).  ``chain`` is what
        receipts are checked against (the group's masters over time); without it, only the
        master address learned at onboarding (or given to :meth:`attach`) is trusted, and a
        rotation of the master is not seen.  ``receipts_kept`` bounds :attr:`receipts`.

        ``anonymity`` (on by default): a message with a reading outside the patient's band
        (learned from the gateway, :meth:`learn_bands`) is ring-signed among this device and
        ``ring_others`` other devices of the group (:meth:`fetch_ring`, or :meth:`use_ring`),
        so an alert raised from it is anonymous and can be recorded on chain; an in-band
        message carries no proof (docs/spec/telemetry.md, "Who ring-signs")."""
        self.key = key
        self.object_id = object_id
        self.suite = suite
        self.http = http
        # Where telemetry goes over HTTP when the gateway named a port of its ingest workers
        # (association v2; the CLI's device file keeps it); None: ``http``'s own gateway URL.
        self.telemetry_url: str | None = None
        self._telemetry_http: httpx.Client | None = None
        self._telemetry_down_until = float("-inf")
        self.clock = clock
        self.random = random
        self._seq = first_seq
        self._seq_lock = threading.Lock()
        self.session: Onboarded | None = None
        self.session_key: bytes | None = None  # kept so a device can persist its session
        self._aead: Aead | None = None
        self._header = b""
        self._group_id = 0
        self._ring: tuple[PublicKey, ...] = ()
        self.anonymity = anonymity
        self.ring_others = ring_others
        self.bands: Bands | None = None  # the patient's bands, as the gateway last said
        self._bands_at = float("-inf")
        self._ring_at: float | None = None  # when fetched; None: set by use_ring, kept
        self._ring_tried_at = float("-inf")
        self._anon_lock = threading.Lock()
        self.key_limit = key_limit
        self.rekey_margin = rekey_margin
        # The session before the last re-key, to seal again what was sealed under it.
        self._previous: tuple[bytes, Aead] | None = None
        self._key_lock = threading.RLock()
        self.gateway: str | None = None  # the master address a re-key answer must be signed by
        self.chain = chain
        self._receipts_kept = receipts_kept
        self.receipts: ReceiptBook | None = None  # set by attach (needs the group)

    @property
    def address(self) -> str:
        return self.key.address

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        return _answer(self.http.post(path, json=body))

    # -- onboarding -------------------------------------------------------------------------------

    def onboard(self, pairing_code: str, *, expected_gateway: str | None = None) -> Onboarded:
        """keySession → getTicket → associate; returns once the chain accepted the device."""
        suite_name = self.suite.name.lower().replace("_", "-")
        if self.suite is Suite.SPECK128_256_CTR_HMAC_SHA256:
            suite_name = "speck"
        session = onboarding.SessionResponse.parse_value(
            self._post(
                "/v1/sessions",
                {
                    "v": 1,
                    "device_key": self.key.public_key.compressed.hex(),
                    "object_id": self.object_id,
                    "suite": suite_name,
                },
            )
        )
        session_id = bytes.fromhex(session.session_id)
        envelope_bytes = bytes.fromhex(session.session_key)
        gateway = PublicKey.recover(
            Signature.from_rsv(bytes.fromhex(session.signature)),
            message_digest(session_id + keccak256(envelope_bytes), SESSION_CONTEXT),
        ).address
        if gateway != session.gateway or (expected_gateway and gateway != expected_gateway):
            raise DeviceError(
                "the session is not signed by the expected gateway", code="untrusted_gateway"
            )
        session_key = Envelope.from_bytes(envelope_bytes).open(
            self.key, AAD_SESSION_KEY + session_id
        )
        aead = Aead(session_key, self.suite)

        def sealed(
            path: str,
            request_aad: bytes,
            reply_aad: bytes,
            body: onboarding.TicketRequest | onboarding.AssociationRequest,
        ) -> bytes:
            ciphertext = aead.seal(body.encode(), request_aad + session_id, random=self.random)
            reply = self._post(
                path, {"v": 1, "session_id": session_id.hex(), "ciphertext": ciphertext.hex()}
            )
            return aead.open(bytes.fromhex(reply["ciphertext"]), reply_aad + session_id)

        ticket = onboarding.TicketReply.parse(
            sealed(
                "/v1/tickets",
                AAD_TICKET_REQUEST,
                AAD_TICKET,
                onboarding.TicketRequest(
                    v=1,
                    object_id=self.object_id,
                    device_key=self.key.public_key.compressed.hex(),
                    pairing_code=pairing_code,
                ),
            )
        )
        token = bytes.fromhex(ticket.token)
        domain = Domain(session.chain_id, session.trust_groups)
        request = self.key.sign_digest(
            request_digest(domain, session.group_id, self.object_id, self.address, token)
        )
        result = onboarding.AssociationReply.parse(
            sealed(
                "/v1/associations",
                AAD_ASSOCIATION_REQUEST,
                AAD_ASSOCIATION,
                onboarding.AssociationRequest(
                    v=1,
                    object_id=self.object_id,
                    token=token.hex(),
                    request=request.to_rsv().hex(),
                ),
            )
        )
        mqtt = result.mqtt
        # The key sealed the two onboarding requests: they count against it.
        self.attach(session_id, session_key, session.group_id, used=aead.used, gateway=gateway)
        self.session = Onboarded(
            session_id,
            session.group_id,
            gateway,
            self.address,
            result.block_number,
            mqtt,
            result.telemetry_url,
        )
        self.telemetry_url = result.telemetry_url
        if self.anonymity:  # the band decides which messages are ring-signed: learned now
            with contextlib.suppress(DeviceError, httpx.HTTPError):
                self.learn_bands()
        return self.session

    def attach(
        self,
        session_id: bytes,
        session_key: bytes,
        group_id: int,
        *,
        used: Usage | None = None,
        gateway: str | None = None,
    ) -> None:
        """Use an existing telemetry session (e.g. after a device restart).  ``used`` is what
        the key had sealed, as persisted with it (:attr:`usage`); without it the count starts
        at zero, and the gateway's own count is what ends the key.  ``gateway`` is the group
        master's address (from onboarding): without it the client cannot check a re-key
        answer, so it does not re-key."""
        with self._key_lock:
            if gateway is not None:
                self.gateway = gateway
            self._attach_receipts(group_id)
            self._aead = Aead(session_key, self.suite, limit=self.key_limit, used=used or Usage())
            self.session_key = session_key
            self._header = MESSAGE_HEADER + session_id
            self._group_id = group_id
            self._previous = None

    def _attach_receipts(self, group_id: int) -> None:
        """One book per group, kept across re-keys (a re-key changes the session, not who
        signs receipts); its fallback master follows :attr:`gateway`."""
        if self.receipts is None or self.receipts.group_id != group_id:
            masters = GroupMasters(self.chain, group_id) if self.chain is not None else None
            self.receipts = ReceiptBook(
                group_id, self.address, masters=masters, keep=self._receipts_kept
            )
        self.receipts.master = self.gateway

    @property
    def usage(self) -> Usage:
        """What the current session key has sealed (persist it with the key)."""
        if self._aead is None:
            raise DeviceError("not onboarded", code="no_session")
        return self._aead.used

    @property
    def session_id(self) -> bytes:
        if not self._header:
            raise DeviceError("not onboarded", code="no_session")
        return self._header[4:HEADER_SIZE]

    # -- re-keying --------------------------------------------------------------------------------

    def rekey(self) -> bytes:
        """Ask the gateway for a new session key (onboarding.md, section 5); returns the new
        session ID.  Signed by the device key, not sealed: the old key may be exhausted.  The
        answer must be signed by this device's gateway, for this old session."""
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        if self.gateway is None:
            raise DeviceError(
                "the gateway's address is not known (attach(..., gateway=...))",
                code="untrusted_gateway",
            )
        with self._key_lock:
            if self._aead is None:
                raise DeviceError("not onboarded", code="no_session")
            old = self.session_id
            issued_at = int(self.clock())
            signature = self.key.sign(old + issued_at.to_bytes(8, "big"), REKEY_REQUEST_CONTEXT)
            raw = self._post(
                "/v1/sessions/rekey",
                {
                    "v": 1,
                    "session_id": old.hex(),
                    "issued_at": issued_at,
                    "signature": signature.to_rsv().hex(),
                },
            )
            try:
                reply = onboarding.RekeyResponse.parse_value(raw)
                new = bytes.fromhex(reply.session_id)
                envelope = bytes.fromhex(reply.session_key)
                signer = PublicKey.recover(
                    Signature.from_rsv(bytes.fromhex(reply.signature)),
                    message_digest(old + new + keccak256(envelope), REKEY_CONTEXT),
                ).address
                if reply.previous != old.hex() or len(new) != 16:
                    raise ValueError("the answer is for another session")
                if signer != self.gateway:
                    raise InvalidSignature("not signed by this device's gateway")
                key = Envelope.from_bytes(envelope).open(self.key, AAD_SESSION_KEY + new)
            except (
                KeyError,
                TypeError,
                ValueError,
                DecodeError,
                DecryptionError,
                InvalidSignature,
            ):
                raise DeviceError(
                    "the re-key answer does not verify", code="untrusted_gateway"
                ) from None
            previous = (self._header, self._aead)
            self.attach(new, key, self._group_id)
            self._previous = previous
            if self.session is not None:
                self.session = dataclasses.replace(self.session, session_id=new)
            return new

    def _sealer(self) -> tuple[bytes, Aead]:
        """The header and key to seal the next message with, re-keying first if the key is
        within ``rekey_margin`` of its limit.  A failed re-key is tried again next time while
        the old key still seals; with nothing left, ``key_exhausted``."""
        with self._key_lock:
            if self._aead is None:
                raise DeviceError("not onboarded", code="no_session")
            margin = min(self.rekey_margin, self._aead.limit.messages // 16)
            if self._aead.remaining <= margin and self.http is not None:
                try:
                    self.rekey()
                except DeviceError as exc:
                    if self._aead.remaining == 0:
                        raise DeviceError(
                            f"the session key is exhausted and re-keying failed ({exc.code})",
                            code="key_exhausted",
                        ) from exc
            return self._header, self._aead

    def _seal(self, header: bytes, plaintext: bytes) -> bytes:
        """Seal ``plaintext`` as a data message with ``header``'s version byte, under the
        current session; re-keys once if the key turns out exhausted (another thread)."""
        for attempt in (0, 1):
            current, aead = self._sealer()
            head = header[:4] + current[4:]
            try:
                return head + aead.seal(plaintext, head, random=self.random)
            except KeyExhausted:
                if attempt or self.http is None:
                    raise DeviceError(
                        "the session key is exhausted; re-key", code="key_exhausted"
                    ) from None
                with self._key_lock:
                    if self._aead is aead:
                        self.rekey()
        raise AssertionError("unreachable")

    def reseal(self, message: bytes) -> bytes:
        """The same data message (same signed payload, same seqs) sealed under the current
        session: for one sealed under the session before the last re-key, or refused
        ``key_exhausted``."""
        with self._key_lock:
            keys = [(self._header, self._aead)]
            if self._previous is not None:
                keys.append(self._previous)
            for header, aead in keys:
                if aead is not None and message[4:20] == header[4:20]:
                    try:
                        plaintext = aead.open(message[20:], message[:20])
                    except DecryptionError:
                        break
                    if aead is self._aead:  # the current key was refused: take a new one
                        try:
                            self.rekey()
                        except DeviceError as exc:
                            raise DeviceError(
                                f"the session key is exhausted and re-keying failed ({exc.code})",
                                code="key_exhausted",
                            ) from exc
                    return self._seal(message[:4], plaintext)
        raise DeviceError(
            "this message was not sealed under a session this client holds", code="no_session"
        )

    # -- telemetry --------------------------------------------------------------------------------

    def next_seq(self) -> int:
        with self._seq_lock:
            seq = self._seq
            self._seq += 1
            return seq

    def prepare(
        self, readings: Sequence[tuple[Vital, float]], *, at_ms: int | None = None
    ) -> bytes:
        """Sign and encrypt one data message; each reading takes the next sequence number."""
        if self._aead is None:
            raise DeviceError("not onboarded", code="no_session")
        now = at_ms if at_ms is not None else int(self.clock() * 1000)
        payload = Payload(
            self._group_id,
            self.address,
            now,
            tuple(
                ReadingItem(self.next_seq(), v, value, v.info.unit, now) for v, value in readings
            ),
        ).encode()
        signature = self.key.sign(payload, READING_CONTEXT).to_rsv()
        members = self._ring_for(readings)
        if not members:
            return self._seal(MESSAGE_HEADER, payload + signature)
        # Out of band: ring-sign now, so an alert raised from this message needs no round
        # trip to the device (docs/spec/alert.md, "Who signs, and when").
        digest = hashlib.sha256(payload).digest()
        context = alert_context(self._group_id, digest)
        proof = RingProof(members, ring.sign(digest, members, self.key, context))
        return self._seal(RING_HEADER, proof.to_bytes() + payload + signature)

    def prepare_by_class(
        self, readings: Sequence[tuple[Vital, float]], *, at_ms: int | None = None
    ) -> list[bytes]:
        """One data message per vital class (``vitals.class_of``: a blood pressure's halves
        together, every other vital alone), so each lands in the block section its consent
        scope reads (docs/spec/block.md) and a provider is given exactly what it may see."""
        now = at_ms if at_ms is not None else int(self.clock() * 1000)
        return [self.prepare(part, at_ms=now) for part in by_class(readings)]

    # -- anonymity --------------------------------------------------------------------------------

    def _ring_for(self, readings: Sequence[tuple[Vital, float]]) -> tuple[PublicKey, ...]:
        """The ring to prove this message among, or () for none: with anonymity on, only a
        message with a reading outside the patient's band needs one (only such a reading
        raises an alert).  Bands not known (never learned, or the gateway out of reach) count
        as out of band: a proof too many costs the device time, a missing one the alert its
        anonymity and its chain record."""
        if not self.anonymity:
            return ()
        with self._anon_lock:
            now = self.clock()
            if now - self._bands_at > BANDS_MAX_AGE_S and self.http is not None:
                self._bands_at = now  # tried: a gateway out of reach is asked again later
                # Unreachable or refused: the last bands known stand (none: prove).
                with contextlib.suppress(DeviceError, httpx.HTTPError):
                    self.bands = self._fetch_bands()
            if self.bands is not None and not self.bands.out_of_band(readings):
                return ()
            stale = self._ring_at is not None and now - self._ring_at > RING_MAX_AGE_S
            if (not self._ring or stale) and now - self._ring_tried_at > RING_MAX_AGE_S / 10:
                self._ring_tried_at = now
                try:
                    self._set_ring(self.fetch_ring(self.ring_others))
                    self._ring_at = now
                except (VitalchainError, httpx.HTTPError, LookupError, TypeError, ValueError):
                    pass  # fewer than 2 devices in the group, no gateway, a bad answer: no proof
            return self._ring

    def learn_bands(self) -> Bands:
        """Ask the gateway for the patient's bands now (onboarding does; so does a device
        told its bands changed), and keep them for :data:`BANDS_MAX_AGE_S`."""
        bands = self._fetch_bands()
        with self._anon_lock:
            self.bands, self._bands_at = bands, self.clock()
        return bands

    def forget_bands(self) -> None:
        """The bands are out of date: learn them again before the next message."""
        with self._anon_lock:
            self._bands_at = float("-inf")

    def _fetch_bands(self) -> Bands:
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        if not self._header:
            raise DeviceError("not onboarded", code="no_session")
        answer = _answer(self.http.get(f"/v1/sessions/{self.session_id.hex()}/bands"))
        try:
            return Bands.parse_value(answer)
        except DecodeError as exc:
            raise DeviceError(exc.message, code="not_a_gateway") from None

    def use_ring(self, members: Sequence[PublicKey]) -> None:
        """Ring-sign among ``members`` (kept, never fetched again) each later message that
        needs a proof; an empty ring turns proofs off until the next fetch."""
        with self._anon_lock:
            self._set_ring(members)
            self._ring_at = None

    def _set_ring(self, members: Sequence[PublicKey]) -> None:
        ring_keys = tuple(members)
        if ring_keys and self.key.public_key not in ring_keys:
            raise DeviceError("the ring must include this device", code="not_in_ring")
        if len(ring_keys) == 1 or len(set(ring_keys)) != len(ring_keys):
            raise DeviceError("a ring has 2 or more distinct members", code="invalid_ring")
        self._ring = ring_keys

    def fetch_ring(self, others: int = 8) -> list[PublicKey]:
        """Ask the gateway for ``others`` associated devices of the group (keys from the chain)
        and return them with this device's own key, in a random order."""
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        data = _answer(self.http.get("/v1/ring", params={"size": others + 1}))
        me = self.key.public_key
        members = [PublicKey.from_bytes(bytes.fromhex(k)) for k in data["members"]]
        members = [*[m for m in members if m != me][:others], me]
        order = sorted(range(len(members)), key=lambda _: self.random(8))
        return [members[i] for i in order]

    def send(self, message: bytes) -> dict[str, Any]:
        """POST one data message; returns the gateway's acknowledgement once its receipt
        verified (kept in :attr:`receipts`; ``invalid_receipt`` otherwise: not delivered).

        Refused ``key_exhausted`` (the gateway's count of the key reached its limit first), or
        ``unknown_session`` for a message sealed under the session before the last re-key
        (its grace period over), the message is sealed again under a current session and sent
        once more: the acknowledgement's ``message_id`` is then the new message's."""
        try:
            return self._send_once(message)
        except DeviceError as exc:
            stale = exc.code == "unknown_session" and self._is_previous(message)
            if exc.code != "key_exhausted" and not stale:
                raise
            return self._send_once(self.reseal(message))

    def _telemetry_client(self) -> httpx.Client | None:
        """A client for :attr:`telemetry_url` (made once), unless it is unset or was
        unreachable less than :data:`TELEMETRY_RETRY_S` ago."""
        if self.telemetry_url is None or self.clock() < self._telemetry_down_until:
            return None
        client = self._telemetry_http
        if client is None or str(client.base_url).rstrip("/") != self.telemetry_url:
            timeout = self.http.timeout if self.http is not None else httpx.Timeout(10)
            client = self._telemetry_http = httpx.Client(
                base_url=self.telemetry_url, timeout=timeout
            )
        return client

    def _is_previous(self, message: bytes) -> bool:
        with self._key_lock:
            return self._previous is not None and message[4:20] == self._previous[0][4:20]

    def _send_once(self, message: bytes) -> dict[str, Any]:
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        headers = {"content-type": "application/octet-stream"}
        workers = self._telemetry_client()
        response = None
        if workers is not None:
            try:
                response = workers.post("/v1/telemetry", content=message, headers=headers)
            except httpx.ConnectError:
                # Never sent, so safe to send again: to the gateway's own URL, which carries
                # telemetry too, for a minute before the workers' port is tried again.
                self._telemetry_down_until = self.clock() + TELEMETRY_RETRY_S
        if response is None:
            response = self.http.post("/v1/telemetry", content=message, headers=headers)
        ack = _answer(response)
        self.check_receipt(ack, message)
        self.note_ack(ack)
        return ack

    def note_ack(self, ack: Mapping[str, Any]) -> None:
        """What an acknowledgement says beyond delivery (any transport): ``prove`` means the
        gateway found a reading outside the patient's band in a message this device sent
        without a ring proof, so the bands it judged by are out of date."""
        if ack.get("prove") is True:
            self.forget_bands()

    def check_receipt(self, ack: Mapping[str, Any], message: bytes) -> Receipt:
        """Verify and keep the receipt of ``ack``, the acknowledgement of ``message`` (any
        transport: the MQTT publisher calls it too); ``invalid_receipt`` if it fails."""
        if self.receipts is None:
            raise DeviceError("not onboarded", code="no_session")
        return self.receipts.check(ack, hashlib.sha256(message).digest())
