"""The gateway (paper 002's master device, paper 000's cluster head) as one service.

Routes and the MQTT bridge are thin; everything they do is a method here: enrolment codes,
the four onboarding steps (docs/spec/onboarding.md), re-keying a telemetry session (its
section 5), telemetry ingest, and revocation.
Time and randomness are injected so tests can pin them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from vitalchain.crypto.aead import USAGE_LIMITS, Aead, Suite, UsageLimit
from vitalchain.crypto.envelope import seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256, message_digest
from vitalchain.errors import DecodeError, DecryptionError, InvalidKey, InvalidSignature
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import IngestCore, KeyBudget, LiveSession
from vitalchain.gateway.preauth import PreAuthLimiter
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.gateway.registry import DeviceRegistry
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.gateway.state import GatewayState, Session, SessionState
from vitalchain.ledger import ChainWriter, ContractError, TxResult
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.ledger.ports import AlertRegistryView, ChainBasics, TrustGroups
from vitalchain.ledger.thresholds import ThresholdPolicy
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.store import Reading, open_store
from vitalchain.store.base import Store
from vitalchain.vitals import NORMAL, Vital
from vitalchain.wire.bands import Bands
from vitalchain.wire.onboarding import (
    AAD_ASSOCIATION,
    AAD_ASSOCIATION_REQUEST,
    AAD_SESSION_KEY,
    AAD_TICKET,
    AAD_TICKET_REQUEST,
    ENROLMENT_CONTEXT,
    ENROLMENT_REQUEST_TAG,
    REKEY_CONTEXT,
    REKEY_REQUEST_CONTEXT,
    SESSION_CONTEXT,
    AssociationReply,
    AssociationRequest,
    MqttGrant,
    RekeyResponse,
    SessionResponse,
    TicketReply,
    TicketRequest,
    pairing_code_hash,
)
from vitalchain.wire.telemetry import Ack

Sealed = TypeVar("Sealed", TicketRequest, AssociationRequest)

__all__ = ["CredentialIssuer", "Enrolment", "Gateway", "GatewayChain", "normalize_code"]

log = logging.getLogger(__name__)

TELEMETRY_SESSION_S = 30 * 86400
_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class GatewayChain(TrustGroups, ChainBasics, AlertRegistryView, Protocol):
    """What a gateway asks of the chain itself (its writes go through the outbox)."""


class CredentialIssuer(Protocol):
    """The broker side (gateway.dynsec.BrokerAdmin): per-device MQTT credentials."""

    def add_device(self, group_id: int, device: str) -> Any: ...

    def remove_device(self, device: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A pairing code just created, for ``patient``, usable until ``expires_at`` (Unix s)."""

    pairing_code: str
    patient: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class MqttInfo:
    host: str
    port: int


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _code_hash(code: str) -> bytes:
    return pairing_code_hash(normalize_code(code))


def _hex(value: object, name: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raise GatewayError("invalid_request", f"{name} is not hex") from None
    if size is not None and len(raw) != size:
        raise GatewayError("invalid_request", f"{name} must be {size} bytes")
    return raw


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        master: PrivateKey,
        ledger: GatewayChain,
        *,
        outbox: ChainWriter,
        watcher: ChainWatcher,
        store: Store | None = None,
        state: GatewayState | None = None,
        credentials: CredentialIssuer | None = None,
        mqtt: MqttInfo | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        chain_wait_s: float = 30.0,
    ) -> None:
        """``outbox``: the master's chain outbox, the one way associations and revocations
        reach the chain, so they never contend with anchors and alert records for a lock;
        an HTTP answer waits up to ``chain_wait_s`` for the transaction (else 503, and the
        device's retry with the same request finds the same entry).  ``watcher``: the
        process's one chain watcher, which keeps the device registry fresh; its owner runs it.
        The master needs gas for its first transaction, ``ensure_group``: on a dev chain its
        owner funds it first (node.py)."""
        self.settings = settings
        self.master = master
        self.ledger = ledger
        self.outbox = outbox
        self.chain_wait_s = chain_wait_s
        self.group_id = settings.group_id
        self.clock = clock
        self.random = random
        self.store: Store = store or open_store(settings.data_dir, settings.store_dsn)
        self.state = state or GatewayState(settings.data_dir / "gateway.db")
        self.credentials = credentials
        self.mqtt = mqtt
        # Where the ingest workers serve POST /v1/telemetry (node.py sets it when they run):
        # told to devices at association (a v2 reply), None for none (v1, as before).
        self.telemetry_url: str | None = None
        self.registry = DeviceRegistry(
            ledger, self.group_id, watcher=watcher, on_revoked=self._on_revoked
        )
        # The patients' bands (the chain's AlertRegistry, cached until a ThresholdSet): what
        # the alarms, sealing at once, a device's ring-signing and a kept proof all judge by.
        self.policy = ThresholdPolicy(ledger, watcher)
        self.ingest_core = IngestCore(
            self.store,
            self.registry,
            RateLimiter(settings.rate_per_s, settings.rate_burst, time.monotonic),
            lambda: int(self.clock() * 1000),
            clock_skew_s=settings.clock_skew_s,
            max_message_bytes=settings.max_message_bytes,
            max_readings=settings.max_readings,
            preauth=RateLimiter(
                settings.telemetry_preauth_rate_per_s,
                settings.telemetry_preauth_burst,
                time.monotonic,
            ),
            master=master,  # signs each acknowledgement's receipt (docs/spec/receipt.md)
            out_of_band=self.out_of_band,
        )
        # Pre-authentication limits (gateway/preauth.py); the clock is read through self so
        # a test that pins ``gateway.clock`` pins the buckets too.
        self.preauth = PreAuthLimiter(
            settings.preauth_rate_per_s, settings.preauth_burst, lambda: self.clock()
        )
        self._purged_at = float("-inf")
        self._purge_lock = threading.Lock()
        self._purge_failing = False
        self._purge_stop = threading.Event()
        self._purge_thread: threading.Thread | None = None
        # Active sessions, and re-keyed ones still in their grace period, carry telemetry again.
        for session in self.state.live_sessions(self._now()):
            self._go_live(session, supersede=False)

    # -- life cycle -------------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create this gateway's trust group on chain on first start; check it on later ones."""
        group = self.ledger.group(self.group_id)
        if group is None:
            self.ledger.create_group(self.master, self.group_id, self.settings.master_object_id)
        elif group.master != self.master.address:
            raise GatewayError(
                "not_group_master",
                f"group {self.group_id} belongs to {group.master}, not this key",
            )

    def start(self) -> None:
        self.ensure_group()
        self.registry.refresh()
        if self._purge_thread is None:
            self._purge_thread = threading.Thread(
                target=self._purge_loop, name="gateway-purge", daemon=True
            )
            self._purge_thread.start()

    def close(self) -> None:
        self._purge_stop.set()
        if self._purge_thread is not None:
            self._purge_thread.join(timeout=5)
        self.ingest_core.close()
        self._settle_usage()
        self.store.close()
        self.state.close()

    def _now(self) -> int:
        return int(self.clock())

    def _settle_usage(self) -> None:
        """Record each live key's exact count, returning its unused reservation (clean stop)."""
        for live in self.ingest_core.sessions():
            if live.budget is not None:
                record = functools.partial(self.state.settle_usage, live.session_id)
                with contextlib.suppress(Exception):  # then the reservation stands: safe
                    live.budget.settle(record)

    def key_limit(self, suite: Suite) -> UsageLimit:
        """What one session key may carry: the suite's limit, or ``session_message_limit``."""
        limit = USAGE_LIMITS[suite]
        messages = self.settings.session_message_limit
        return limit if messages is None else UsageLimit(messages, limit.blocks)

    # -- expiry of unauthenticated state ----------------------------------------------------------

    def purge_expired(self) -> dict[str, int]:
        """Delete expired pairing codes, never-activated sessions, used enrolment requests past
        their window and the store's expired challenges; rows deleted, per kind.

        Runs every ``purge_every_s`` (a timer from :meth:`start`) and, amortised, from the
        routes that create such state, so a burst of them cannot accumulate.
        """
        with self._purge_lock:
            now = self.clock()
            self._purged_at = now
            purged = self.state.purge(int(now))
            nonces = self.store.purge_nonces(int(now * 1000))
            self.preauth.sweep()
        return {
            "enrolments": purged.enrolments,
            "sessions": purged.sessions,
            "enrolment_requests": purged.enrolment_requests,
            "challenges": nonces,
        }

    def _maybe_purge(self) -> None:
        if self.clock() - self._purged_at >= self.settings.purge_every_s:
            self._purge_quietly()

    def _purge_quietly(self) -> None:
        """A failed purge (store or disk away) is retried next time; logged once per outage."""
        try:
            self.purge_expired()
        except Exception as exc:  # any failure: keep serving, retry on the next round
            if not self._purge_failing:
                log.warning("purging expired state failed (%s); will retry", type(exc).__name__)
            self._purge_failing = True
        else:
            if self._purge_failing:
                log.info("purging expired state works again")
            self._purge_failing = False

    def _purge_loop(self) -> None:
        while not self._purge_stop.wait(self.settings.purge_every_s):
            self._purge_quietly()

    # -- 1. enrolment ---------------------------------------------------------------------------

    def create_enrolment(
        self,
        body: bytes,
        *,
        patient: str,
        label: str,
        ttl_seconds: int,
        issued_at: int | None,
        bearer: str | None,
        signature: str | None,
    ) -> Enrolment:
        request = self._authorise_enrolment(body, patient, issued_at, bearer, signature)
        self._maybe_purge()
        raw = base64.b32encode(self.random(8)).decode()[:12]
        code = "-".join(raw[i : i + 4] for i in range(0, 12, 4))
        expires_at = self._now() + ttl_seconds
        if not self.state.add_enrolment(
            _code_hash(code), patient, label, expires_at, request=request
        ):
            raise GatewayError(
                "enrolment_replayed", "this signed enrolment request was already used"
            )
        return Enrolment(code, patient, expires_at)

    def require_admin(self, authorization: str | None) -> None:
        token = self.settings.admin_token
        scheme, _, value = (authorization or "").partition(" ")
        if (
            token is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(value.encode(), token.get_secret_value().encode())
        ):
            raise GatewayError("unauthorized", "admin token required")

    def _authorise_enrolment(
        self,
        body: bytes,
        patient: str,
        issued_at: int | None,
        bearer: str | None,
        signature: str | None,
    ) -> tuple[bytes, int] | None:
        """Check the admin token or the patient's signature.  For a signed request, return the
        key that makes it single use, and until when it must be kept.

        The key is a hash of the signer and the exact body bytes, not of the signature: ECDSA
        signatures are malleable (``(r, n - s)`` with the other recovery id verifies too), so a
        key on the signature would let a replay through under a second valid signature.  It is
        kept for twice the clock-skew window past ``issued_at``: the request is refused as stale
        after one window, and the second covers a gateway clock stepped back.  An admin-token
        request is not single use: the operator may ask for many codes with one body.
        """
        token = self.settings.admin_token
        if bearer is not None:
            if token is not None and hmac.compare_digest(
                bearer.encode(), token.get_secret_value().encode()
            ):
                return None
            raise GatewayError("unauthorized", "invalid admin token")
        if signature is None:
            raise GatewayError("unauthorized", "needs an admin token or the patient's signature")
        if issued_at is None or abs(issued_at - self._now()) > self.settings.clock_skew_s:
            raise GatewayError("unauthorized", "issued_at missing or outside the clock-skew window")
        try:
            sig = Signature.from_rsv(_hex(signature, "signature", 65))
            signer = PublicKey.recover(sig, message_digest(body, ENROLMENT_CONTEXT))
        except (DecodeError, InvalidSignature, GatewayError):
            raise GatewayError("unauthorized", "the patient signature does not verify") from None
        if signer.address != patient:
            raise GatewayError("unauthorized", "the request is not signed by the patient")
        request_hash = hashlib.sha256(
            ENROLMENT_REQUEST_TAG + bytes.fromhex(signer.address[2:]) + body
        ).digest()
        return request_hash, issued_at + 2 * self.settings.clock_skew_s

    # -- 2. session (keySession) ------------------------------------------------------------------

    def open_session(self, device_key: str, object_id: int, suite_name: str) -> SessionResponse:
        try:
            key = PublicKey.from_bytes(_hex(device_key, "device_key"))
        except InvalidKey:
            raise GatewayError("invalid_key", "device_key is not a secp256k1 public key") from None
        try:
            suite = Suite.parse(suite_name)
        except ValueError as exc:
            raise GatewayError("invalid_request", str(exc)) from None
        if suite not in self.settings.suites:
            raise GatewayError("invalid_request", f"suite {suite.label} is not offered here")
        self._maybe_purge()
        if self.ledger.object_id_taken(object_id):
            raise GatewayError(
                "object_id_taken", f"object ID {object_id} is already taken on chain"
            )
        if self.ledger.device(key.address).status is not DeviceStatus.NONE:
            raise GatewayError("device_known", "this device key already has a group on chain")
        session_id = self.random(16)
        session_key = self.random(32)
        now = self._now()
        expires_at = now + self.settings.session_ttl_s
        self.state.add_session(
            Session(
                session_id, key.address, key.compressed, object_id, suite, session_key,
                now, expires_at, SessionState.NEW, 0, None, None,
            )
        )  # fmt: skip
        envelope = seal_for(
            [key], session_key, AAD_SESSION_KEY + session_id, random=self.random
        ).to_bytes()
        proof = self.master.sign(session_id + keccak256(envelope), SESSION_CONTEXT)
        return SessionResponse(
            v=1,
            session_id=session_id.hex(),
            group_id=self.group_id,
            gateway=self.master.address,
            chain_id=self.ledger.chain_id,
            trust_groups=self.ledger.address_of("TrustGroups"),
            suite=suite.name.lower().replace("_", "-"),
            expires_at=expires_at,
            session_key=envelope.hex(),
            signature=proof.to_rsv().hex(),
        )

    def _session(self, session_id_hex: str) -> Session:
        """The session named, unless unknown, expired or burned (401 ``unknown_session``)."""
        session_id = _hex(session_id_hex, "session_id", 16)
        session = self.state.session(session_id)
        if (
            session is None
            or session.expires_at <= self._now()
            or session.state is SessionState.BURNED
        ):
            raise GatewayError("unknown_session", "unknown or expired session")
        return session

    def _open_sealed(
        self,
        session_id_hex: str,
        ciphertext_hex: str,
        aad: bytes,
        expect: SessionState,
        shape: type[Sealed],
    ) -> tuple[Session, Sealed, Aead]:
        session = self._session(session_id_hex)
        session_id = session.session_id
        aead = Aead(session.key, session.suite)
        try:
            plaintext = aead.open(_hex(ciphertext_hex, "ciphertext"), aad + session_id)
            json.loads(plaintext)
        except (DecryptionError, ValueError):
            raise GatewayError("decryption_failed", "decryption failed") from None
        try:
            body = shape.parse(plaintext)
        except DecodeError as exc:
            raise GatewayError(exc.code, exc.message) from None
        if session.state is not expect:
            code = "no_ticket" if expect is SessionState.TICKETED else "session_used"
            raise GatewayError(code, f"session is {session.state.value}, not {expect.value}")
        return session, body, aead

    # -- 3. ticket (getTicket) --------------------------------------------------------------------

    def issue_ticket(self, session_id_hex: str, ciphertext_hex: str) -> bytes:
        """The ticket reply, sealed under the session key."""
        session, body, aead = self._open_sealed(
            session_id_hex, ciphertext_hex, AAD_TICKET_REQUEST, SessionState.NEW, TicketRequest
        )
        if body.object_id != session.object_id or body.device_key.lower() not in (
            session.device_key.hex(),
            PublicKey.from_bytes(session.device_key).uncompressed.hex(),
        ):
            raise GatewayError("session_mismatch", "object ID or key differ from the session's")
        code = body.pairing_code
        enrolment = self.state.enrolment(_code_hash(code))
        now = self._now()
        problem: tuple[str, str] | None = None
        if enrolment is None:
            problem = ("pairing_code_invalid", "unknown pairing code")
        elif enrolment.used_at is not None:
            problem = ("pairing_code_used", "pairing code already used")
        elif enrolment.expires_at <= now:
            problem = ("pairing_code_expired", "pairing code expired")
        if problem is not None:
            failures = self.state.record_failure(
                session.session_id, self.settings.max_ticket_attempts
            )
            if failures >= self.settings.max_ticket_attempts:
                raise GatewayError(
                    "too_many_attempts", "too many bad pairing codes; session burned"
                )
            raise GatewayError(*problem)
        token = self.ledger.issue_token(
            self.master, self.group_id, session.object_id, session.device
        )
        if not self.state.consume_enrolment(
            _code_hash(code), session.device, now, session.session_id, token.to_rsv()
        ):
            raise GatewayError("pairing_code_used", "pairing code already used")
        reply = TicketReply(
            v=1,
            token=token.to_rsv().hex(),
            group_id=self.group_id,
            object_id=session.object_id,
            device=session.device,
        )
        return aead.seal(reply.encode(), AAD_TICKET + session.session_id, random=self.random)

    # -- 4. association ---------------------------------------------------------------------------

    def associate(self, session_id_hex: str, ciphertext_hex: str) -> bytes:
        """The association reply, sealed under the session key, once the chain accepted it."""
        session, body, aead = self._open_sealed(
            session_id_hex,
            ciphertext_hex,
            AAD_ASSOCIATION_REQUEST,
            SessionState.TICKETED,
            AssociationRequest,
        )
        if body.object_id != session.object_id:
            raise GatewayError("session_mismatch", "object ID differs from the session's")
        token = _hex(body.token, "token", 65)
        if session.token is None or not hmac.compare_digest(token, session.token):
            raise GatewayError("no_ticket", "this is not the token issued for this session")
        try:
            request = Signature.from_rsv(_hex(body.request, "request", 65))
        except DecodeError:
            raise GatewayError("invalid_request", "request is not an r||s||v signature") from None
        try:
            result = self._associate_on_chain(session, token, request)
        except ContractError as exc:
            raise GatewayError(exc.code, str(exc)) from None
        expires_at = self._now() + TELEMETRY_SESSION_S
        self.state.activate(session.session_id, expires_at)
        live = self.state.session(session.session_id)
        assert live is not None
        self._go_live(live)
        self.registry.mark_active(session.device)
        mqtt = None
        if self.credentials is not None and self.mqtt is not None:
            creds = self.credentials.add_device(self.group_id, session.device)
            mqtt = MqttGrant(
                host=self.mqtt.host,
                port=self.mqtt.port,
                username=creds.username,
                password=creds.password,
                telemetry_topic=creds.telemetry_topic,
                ack_topic=creds.ack_topic,
            )
        reply = AssociationReply(
            v=1 if self.telemetry_url is None else 2,
            status="active",
            device=session.device,
            block_number=result.block_number,
            tx_hash=result.tx_hash.hex(),
            mqtt=mqtt,
            telemetry_url=self.telemetry_url,
        )
        return aead.seal(reply.encode(), AAD_ASSOCIATION + session.session_id, random=self.random)

    def _associate_on_chain(self, session: Session, token: bytes, request: Signature) -> TxResult:
        device_key = PublicKey.from_bytes(session.device_key)
        # One entry per session and request: a retry of the same request (its answer lost)
        # finds the entry, and so the transaction, of the first; a corrected one is new.
        digest = keccak256(token + request.to_rsv())[:8].hex()
        ticket = self.outbox.submit(
            f"associate:{self.group_id}:{session.session_id.hex()}:{digest}",
            "TrustGroups", "associate", self.group_id, session.object_id, device_key.xy,
            token, request.to_rsv(),
        )  # fmt: skip
        return ticket.result(self.chain_wait_s)

    def _go_live(self, session: Session, *, supersede: bool = True) -> None:
        if session.patient is None:
            return
        sid = session.session_id
        budget = KeyBudget(
            self.key_limit(session.suite),
            session.used,
            lambda used: self.state.reserve_usage(sid, used),
            max_message_bytes=self.settings.max_message_bytes,
        )
        self.ingest_core.add_session(
            LiveSession(
                sid,
                session.device,
                self.group_id,
                session.patient,
                PublicKey.from_bytes(session.device_key),
                Aead(session.key, session.suite),
                session.expires_at,
                budget,
            ),
            supersede=supersede,
        )

    # -- 5. re-key --------------------------------------------------------------------------------

    def rekey(self, session_id_hex: str, issued_at: int, signature_hex: str) -> RekeyResponse:
        """Replace an active telemetry session by a new one, same device and patient, new key.

        The request is the device key's signature over ``old id ‖ u64 issued_at``; the old
        key is not used (it may be exhausted).  The answer is the new key wrapped for the
        device key, signed by the master together with the old session ID, so it is bound to
        this re-key.  A session is re-keyed once: asked again (a lost answer, a replay), the
        gateway answers with the same new session, freshly wrapped, and creates nothing.  The
        old session carries telemetry for ``rekey_grace_s`` more (messages already in
        flight), then expires.
        """
        session = self._session(session_id_hex)
        if session.state not in (SessionState.ACTIVE, SessionState.REKEYED):
            raise GatewayError("session_used", f"session is {session.state.value}, not active")
        now = self._now()
        if abs(issued_at - now) > self.settings.clock_skew_s:
            raise GatewayError("clock_skew", "issued_at is outside the clock-skew window")
        device_key = PublicKey.from_bytes(session.device_key)
        try:
            device_key.verify(
                Signature.from_rsv(_hex(signature_hex, "signature", 65)),
                session.session_id + issued_at.to_bytes(8, "big"),
                REKEY_REQUEST_CONTEXT,
            )
        except (DecodeError, InvalidSignature):
            raise GatewayError(
                "invalid_signature", "the device signature does not verify"
            ) from None
        self.registry.check_active(session.device)
        if session.state is SessionState.ACTIVE:
            new = Session(
                self.random(16), session.device, session.device_key, session.object_id,
                session.suite, self.random(32), now, now + TELEMETRY_SESSION_S,
                SessionState.ACTIVE, 0, session.token, session.patient,
            )  # fmt: skip
            grace_until = now + self.settings.rekey_grace_s
            if self.state.rekey(session.session_id, new, grace_until):
                self._go_live(new, supersede=False)
                self.ingest_core.end_session_at(session.session_id, grace_until)
                log.info("a device re-keyed its session")
                return self._rekey_answer(
                    session.session_id, new, min(grace_until, session.expires_at)
                )
            # Another request re-keyed it a moment ago: answer as for a repeat.
            again = self.state.session(session.session_id)
            assert again is not None
            session = again
        successor = self.state.session(session.successor) if session.successor else None
        if (
            successor is None
            or successor.state is not SessionState.ACTIVE
            or successor.expires_at <= now
        ):
            raise GatewayError("session_used", "this session was re-keyed already")
        return self._rekey_answer(session.session_id, successor, session.expires_at)

    def _rekey_answer(self, old: bytes, new: Session, old_until: int) -> RekeyResponse:
        envelope = seal_for(
            [PublicKey.from_bytes(new.device_key)],
            new.key,
            AAD_SESSION_KEY + new.session_id,
            random=self.random,
        ).to_bytes()
        proof = self.master.sign(old + new.session_id + keccak256(envelope), REKEY_CONTEXT)
        return RekeyResponse(
            v=1,
            previous=old.hex(),
            previous_expires_at=old_until,
            session_id=new.session_id.hex(),
            suite=new.suite.name.lower().replace("_", "-"),
            expires_at=new.expires_at,
            session_key=envelope.hex(),
            signature=proof.to_rsv().hex(),
        )

    # -- telemetry and revocation -----------------------------------------------------------------

    def ring_members(self, size: int) -> list[str]:
        """A random sample of the group's active devices, for devices to ring-sign among.

        This is paper 000's mixing service: the members come from the chain, and whoever
        verifies a ring checks them against the chain again, so the gateway is not trusted.
        """
        active = self.registry.active()
        if len(active) < 2:
            raise GatewayError("ring_unavailable", "fewer than 2 active devices in the group")
        chosen = sorted(active, key=lambda _: self.random(8))[:size]
        return [self.registry.public_key(device).compressed.hex() for device in chosen]

    def out_of_band(self, patient: str, readings: Sequence[Reading]) -> bool:
        """Whether a reading is outside the patient's band (the on-chain policy)."""
        return any(self.policy.evaluate(patient, r.vital, r.value) != NORMAL for r in readings)

    def bands(self, session_id: bytes) -> Bands:
        """The bands of the session's patient, every vital: what a device ring-signs by
        (docs/spec/telemetry.md, "Bands").  Only for a live session of an active device, so
        the policy's cache holds only this group's patients."""
        session = self.ingest_core.live_session(session_id, int(self.clock() * 1000))
        if session is None:
            raise GatewayError("unknown_session", "unknown or expired session")
        self.registry.check_active(session.device)
        return Bands.of({vital: self.policy.thresholds(session.patient, vital) for vital in Vital})

    def ingest(self, data: bytes, *, topic_device: str | None = None) -> Ack:
        return self.ingest_core.ingest(data, topic_device=topic_device)

    def revoke(self, device: str) -> TxResult:
        """The master revokes a device on chain; the gateway stops accepting it at once."""
        # A key of its own per request: revoking twice is the contract's to refuse
        # (device_already_revoked).
        ticket = self.outbox.submit(
            f"revoke:{self.group_id}:{device}:{self.random(8).hex()}",
            "TrustGroups", "revokeDevice", self.group_id, device,
        )  # fmt: skip
        try:
            result = ticket.result(self.chain_wait_s)
        except ContractError as exc:
            raise GatewayError(exc.code, str(exc)) from None
        self.registry.refresh()
        return result

    def _on_revoked(self, device: str) -> None:
        """Ingest already refuses the device (the registry says revoked); close the broker too."""
        if self.credentials is not None:
            # The chain is the authority and ingest already refuses the device; the broker
            # credential removal is best effort on top.
            with contextlib.suppress(Exception):
                self.credentials.remove_device(device)
