"""The gateway (paper 002's master device, paper 000's cluster head) as one service.

Routes and the MQTT bridge are thin; everything they do is a method here: enrolment codes,
the four onboarding steps (docs/spec/onboarding.md), telemetry ingest, and revocation.
Time and randomness are injected so tests can pin them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vitalchain.crypto.aead import Aead, Suite
from vitalchain.crypto.envelope import seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256, message_digest
from vitalchain.errors import DecodeError, DecryptionError, InvalidKey, InvalidSignature
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import Ack, IngestCore, LiveSession
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.gateway.registry import DeviceRegistry
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.gateway.state import GatewayState, Session, SessionState
from vitalchain.ledger import ContractError, Ledger, TxResult
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.store import SqliteStore
from vitalchain.store.base import Store

__all__ = ["CredentialIssuer", "Gateway", "normalize_code"]

SESSION_CONTEXT = b"vitalchain/v1/session"
ENROLMENT_CONTEXT = b"vitalchain/v1/enrolment"
AAD_SESSION_KEY = b"vitalchain/v1 session"
AAD_TICKET_REQUEST = b"vitalchain/v1 ticket request"
AAD_TICKET = b"vitalchain/v1 ticket"
AAD_ASSOCIATION_REQUEST = b"vitalchain/v1 association request"
AAD_ASSOCIATION = b"vitalchain/v1 association"
TELEMETRY_SESSION_S = 30 * 86400
_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class CredentialIssuer(Protocol):
    """The broker side (gateway.broker.BrokerAdmin): per-device MQTT credentials."""

    def add_device(self, group_id: int, device: str) -> Any: ...

    def remove_device(self, device: str) -> None: ...


@dataclass(frozen=True, slots=True)
class MqttInfo:
    host: str
    port: int


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _code_hash(code: str) -> bytes:
    return hashlib.sha256(b"vitalchain/v1 pairing code " + normalize_code(code).encode()).digest()


def _hex(value: object, name: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raise GatewayError(422, "invalid_request", f"{name} is not hex") from None
    if size is not None and len(raw) != size:
        raise GatewayError(422, "invalid_request", f"{name} must be {size} bytes")
    return raw


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        master: PrivateKey,
        ledger: Ledger,
        *,
        store: Store | None = None,
        state: GatewayState | None = None,
        credentials: CredentialIssuer | None = None,
        mqtt: MqttInfo | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.settings = settings
        self.master = master
        self.ledger = ledger
        self.group_id = settings.group_id
        self.clock = clock
        self.random = random
        self.store: Store = store or SqliteStore(settings.data_dir / "store.db")
        self.state = state or GatewayState(settings.data_dir / "gateway.db")
        self.credentials = credentials
        self.mqtt = mqtt
        self.registry = DeviceRegistry(
            ledger, self.group_id, settings.revocation_poll_s, on_revoked=self._on_revoked
        )
        self.ingest_core = IngestCore(
            self.store,
            self.registry,
            RateLimiter(settings.rate_per_s, settings.rate_burst, time.monotonic),
            lambda: int(self.clock() * 1000),
            clock_skew_s=settings.clock_skew_s,
            max_message_bytes=settings.max_message_bytes,
            max_readings=settings.max_readings,
        )
        for session in self.state.active_sessions():
            self._go_live(session)

    # -- life cycle -------------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create this gateway's trust group on chain on first start; check it on later ones."""
        group = self.ledger.group(self.group_id)
        if group is None:
            self.ledger.fund(self.master.address)
            self.ledger.create_group(self.master, self.group_id, self.settings.master_object_id)
        elif group.master != self.master.address:
            raise GatewayError(
                409,
                "not_group_master",
                f"group {self.group_id} belongs to {group.master}, not this key",
            )

    def start(self) -> None:
        self.ensure_group()
        self.registry.refresh()
        self.registry.start()

    def close(self) -> None:
        self.registry.stop()
        self.ingest_core.close()
        self.store.close()
        self.state.close()

    def _now(self) -> int:
        return int(self.clock())

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
    ) -> dict[str, Any]:
        self._authorise_enrolment(body, patient, issued_at, bearer, signature)
        raw = base64.b32encode(self.random(8)).decode()[:12]
        code = "-".join(raw[i : i + 4] for i in range(0, 12, 4))
        expires_at = self._now() + ttl_seconds
        self.state.add_enrolment(_code_hash(code), patient, label, expires_at)
        return {"v": 1, "pairing_code": code, "patient": patient, "expires_at": expires_at}

    def require_admin(self, authorization: str | None) -> None:
        token = self.settings.admin_token
        scheme, _, value = (authorization or "").partition(" ")
        if (
            token is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(value.encode(), token.get_secret_value().encode())
        ):
            raise GatewayError(401, "unauthorized", "admin token required")

    def _authorise_enrolment(
        self,
        body: bytes,
        patient: str,
        issued_at: int | None,
        bearer: str | None,
        signature: str | None,
    ) -> None:
        token = self.settings.admin_token
        if bearer is not None:
            if token is not None and hmac.compare_digest(
                bearer.encode(), token.get_secret_value().encode()
            ):
                return
            raise GatewayError(401, "unauthorized", "invalid admin token")
        if signature is None:
            raise GatewayError(
                401, "unauthorized", "needs an admin token or the patient's signature"
            )
        if issued_at is None or abs(issued_at - self._now()) > self.settings.clock_skew_s:
            raise GatewayError(
                401, "unauthorized", "issued_at missing or outside the clock-skew window"
            )
        try:
            sig = Signature.from_rsv(_hex(signature, "signature", 65))
            signer = PublicKey.recover(sig, message_digest(body, ENROLMENT_CONTEXT))
        except (DecodeError, InvalidSignature, GatewayError):
            raise GatewayError(
                401, "unauthorized", "the patient signature does not verify"
            ) from None
        if signer.address != patient:
            raise GatewayError(401, "unauthorized", "the request is not signed by the patient")

    # -- 2. session (keySession) ------------------------------------------------------------------

    def open_session(self, device_key: str, object_id: int, suite_name: str) -> dict[str, Any]:
        try:
            key = PublicKey.from_bytes(_hex(device_key, "device_key"))
        except InvalidKey:
            raise GatewayError(
                422, "invalid_key", "device_key is not a secp256k1 public key"
            ) from None
        try:
            suite = Suite.parse(suite_name)
        except ValueError as exc:
            raise GatewayError(422, "invalid_request", str(exc)) from None
        if suite not in self.settings.suites:
            raise GatewayError(422, "invalid_request", f"suite {suite.label} is not offered here")
        if self.ledger.object_id_taken(object_id):
            raise GatewayError(
                409, "object_id_taken", f"object ID {object_id} is already taken on chain"
            )
        if self.ledger.device(key.address).status is not DeviceStatus.NONE:
            raise GatewayError(409, "device_known", "this device key already has a group on chain")
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
        return {
            "v": 1,
            "session_id": session_id.hex(),
            "group_id": self.group_id,
            "gateway": self.master.address,
            "chain_id": self.ledger.chain_id,
            "trust_groups": self.ledger.address_of("TrustGroups"),
            "suite": suite.name.lower().replace("_", "-"),
            "expires_at": expires_at,
            "session_key": envelope.hex(),
            "signature": proof.to_rsv().hex(),
        }

    def _open_sealed(
        self, session_id_hex: str, ciphertext_hex: str, aad: bytes, expect: SessionState
    ) -> tuple[Session, dict[str, Any], Aead]:
        session_id = _hex(session_id_hex, "session_id", 16)
        session = self.state.session(session_id)
        if (
            session is None
            or session.expires_at <= self._now()
            or session.state is SessionState.BURNED
        ):
            raise GatewayError(401, "unknown_session", "unknown or expired session")
        aead = Aead(session.key, session.suite)
        try:
            plaintext = aead.open(_hex(ciphertext_hex, "ciphertext"), aad + session_id)
            body = json.loads(plaintext)
        except (DecryptionError, ValueError):
            raise GatewayError(400, "decryption_failed", "decryption failed") from None
        if not isinstance(body, dict) or body.get("v") != 1:
            raise GatewayError(422, "invalid_request", "sealed body must be a JSON object with v=1")
        if session.state is not expect:
            code = "no_ticket" if expect is SessionState.TICKETED else "session_used"
            raise GatewayError(409, code, f"session is {session.state.value}, not {expect.value}")
        return session, body, aead

    # -- 3. ticket (getTicket) --------------------------------------------------------------------

    def issue_ticket(self, session_id_hex: str, ciphertext_hex: str) -> dict[str, Any]:
        session, body, aead = self._open_sealed(
            session_id_hex, ciphertext_hex, AAD_TICKET_REQUEST, SessionState.NEW
        )
        if body.get("object_id") != session.object_id or str(
            body.get("device_key", "")
        ).lower() not in (
            session.device_key.hex(),
            PublicKey.from_bytes(session.device_key).uncompressed.hex(),
        ):
            raise GatewayError(
                400, "session_mismatch", "object ID or key differ from the session's"
            )
        code = body.get("pairing_code")
        if not isinstance(code, str):
            raise GatewayError(422, "invalid_request", "pairing_code is a string")
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
                    429, "too_many_attempts", "too many bad pairing codes; session burned"
                )
            raise GatewayError(403, *problem)
        token = self.ledger.issue_token(
            self.master, self.group_id, session.object_id, session.device
        )
        if not self.state.consume_enrolment(
            _code_hash(code), session.device, now, session.session_id, token.to_rsv()
        ):
            raise GatewayError(403, "pairing_code_used", "pairing code already used")
        reply = {
            "v": 1,
            "token": token.to_rsv().hex(),
            "group_id": self.group_id,
            "object_id": session.object_id,
            "device": session.device,
        }
        return {
            "v": 1,
            "ciphertext": aead.seal(
                json.dumps(reply).encode(), AAD_TICKET + session.session_id, random=self.random
            ).hex(),
        }

    # -- 4. association ---------------------------------------------------------------------------

    def associate(self, session_id_hex: str, ciphertext_hex: str) -> dict[str, Any]:
        session, body, aead = self._open_sealed(
            session_id_hex, ciphertext_hex, AAD_ASSOCIATION_REQUEST, SessionState.TICKETED
        )
        if body.get("object_id") != session.object_id:
            raise GatewayError(400, "session_mismatch", "object ID differs from the session's")
        token = _hex(body.get("token", ""), "token", 65)
        if session.token is None or not hmac.compare_digest(token, session.token):
            raise GatewayError(409, "no_ticket", "this is not the token issued for this session")
        try:
            request = Signature.from_rsv(_hex(body.get("request", ""), "request", 65))
        except DecodeError:
            raise GatewayError(
                422, "invalid_request", "request is not an r||s||v signature"
            ) from None
        try:
            result: TxResult = self.ledger.associate(
                self.master, self.group_id, session.object_id,
                PublicKey.from_bytes(session.device_key), Signature.from_rsv(token), request,
            )  # fmt: skip
        except ContractError as exc:
            raise GatewayError(409, exc.code, str(exc)) from None
        expires_at = self._now() + TELEMETRY_SESSION_S
        self.state.activate(session.session_id, expires_at)
        live = self.state.session(session.session_id)
        assert live is not None
        self._go_live(live)
        self.registry.mark_active(session.device)
        mqtt = None
        if self.credentials is not None and self.mqtt is not None:
            creds = self.credentials.add_device(self.group_id, session.device)
            mqtt = {
                "host": self.mqtt.host,
                "port": self.mqtt.port,
                "username": creds.username,
                "password": creds.password,
                "telemetry_topic": creds.telemetry_topic,
                "ack_topic": creds.ack_topic,
            }
        reply = {
            "v": 1,
            "status": "active",
            "device": session.device,
            "block_number": result.block_number,
            "tx_hash": result.tx_hash.hex(),
            "mqtt": mqtt,
        }
        sealed = aead.seal(
            json.dumps(reply).encode(), AAD_ASSOCIATION + session.session_id, random=self.random
        )
        return {"v": 1, "ciphertext": sealed.hex()}

    def _go_live(self, session: Session) -> None:
        if session.patient is None:
            return
        self.ingest_core.add_session(
            LiveSession(
                session.session_id,
                session.device,
                self.group_id,
                session.patient,
                PublicKey.from_bytes(session.device_key),
                Aead(session.key, session.suite),
                session.expires_at,
            )
        )

    # -- telemetry and revocation -----------------------------------------------------------------

    def ring_members(self, size: int) -> list[str]:
        """A random sample of the group's active devices, for devices to ring-sign among.

        This is paper 000's mixing service: the members come from the chain, and whoever
        verifies a ring checks them against the chain again, so the gateway is not trusted.
        """
        active = self.registry.active()
        if len(active) < 2:
            raise GatewayError(409, "ring_unavailable", "fewer than 2 active devices in the group")
        chosen = sorted(active, key=lambda _: self.random(8))[:size]
        return [self.registry.public_key(device).compressed.hex() for device in chosen]

    def ingest(self, data: bytes, *, topic_device: str | None = None) -> Ack:
        return self.ingest_core.ingest(data, topic_device=topic_device)

    def revoke(self, device: str) -> TxResult:
        """The master revokes a device on chain; the gateway stops accepting it at once."""
        try:
            result = self.ledger.revoke_device(self.master, self.group_id, device)
        except ContractError as exc:
            raise GatewayError(409, exc.code, str(exc)) from None
        self.registry.refresh()
        return result

    def _on_revoked(self, device: str) -> None:
        """Ingest already refuses the device (the registry says revoked); close the broker too."""
        if self.credentials is not None:
            # The chain is the authority and ingest already refuses the device; the broker
            # credential removal is best effort on top.
            with contextlib.suppress(Exception):
                self.credentials.remove_device(device)
