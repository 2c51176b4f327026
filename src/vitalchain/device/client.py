"""The device SDK: a wearable's side of onboarding and telemetry.

A device owns a secp256k1 key and an object ID.  ``onboard`` runs paper 002's four steps
against a gateway (docs/spec/onboarding.md); ``prepare`` builds a signed, encrypted data
message (docs/spec/telemetry.md); ``send`` posts it over HTTP.  MQTT publishing lives in
:mod:`vitalchain.device.mqtt`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from vitalchain.crypto import ring
from vitalchain.crypto.aead import DEFAULT_SUITE, Aead, Suite
from vitalchain.crypto.envelope import Envelope
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256, message_digest
from vitalchain.crypto.ring import RingProof, alert_context
from vitalchain.errors import VitalchainError
from vitalchain.ledger.eip712 import Domain, request_digest
from vitalchain.vitals import Vital

__all__ = ["DeviceClient", "DeviceError", "MqttCredentials", "Onboarded"]

READING_CONTEXT = b"vitalchain/v1/reading"
RING_HEADER = b"VCm\x02"  # a data message carrying a ring proof (telemetry.md, v2)
SESSION_CONTEXT = b"vitalchain/v1/session"


class DeviceError(VitalchainError):
    """A refusal from the gateway (``code`` is the gateway's) or a failed check on the device."""

    code = "device_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True, slots=True)
class MqttCredentials:
    host: str
    port: int
    username: str
    password: str
    telemetry_topic: str
    ack_topic: str


@dataclass(frozen=True, slots=True)
class Onboarded:
    session_id: bytes
    group_id: int
    gateway: str
    device: str
    block_number: int
    mqtt: MqttCredentials | None


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
    ) -> None:
        self.key = key
        self.object_id = object_id
        self.suite = suite
        self.http = http
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

    @property
    def address(self) -> str:
        return self.key.address

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        response = self.http.post(path, json=body)
        data: dict[str, Any] = response.json()
        if response.status_code >= 400:
            err = data.get("error", {})
            raise DeviceError(
                err.get("message", "refused"), code=err.get("code"), status=response.status_code
            )
        return data

    # -- onboarding -------------------------------------------------------------------------------

    def onboard(self, pairing_code: str, *, expected_gateway: str | None = None) -> Onboarded:
        """keySession → getTicket → associate; returns once the chain accepted the device."""
        suite_name = self.suite.name.lower().replace("_", "-")
        if self.suite is Suite.SPECK128_256_CTR_HMAC_SHA256:
            suite_name = "speck"
        session = self._post(
            "/v1/sessions",
            {
                "v": 1,
                "device_key": self.key.public_key.compressed.hex(),
                "object_id": self.object_id,
                "suite": suite_name,
            },
        )
        session_id = bytes.fromhex(session["session_id"])
        envelope_bytes = bytes.fromhex(session["session_key"])
        gateway = PublicKey.recover(
            Signature.from_rsv(bytes.fromhex(session["signature"])),
            message_digest(session_id + keccak256(envelope_bytes), SESSION_CONTEXT),
        ).address
        if gateway != session["gateway"] or (expected_gateway and gateway != expected_gateway):
            raise DeviceError(
                "the session is not signed by the expected gateway", code="untrusted_gateway"
            )
        session_key = Envelope.from_bytes(envelope_bytes).open(
            self.key, b"vitalchain/v1 session" + session_id
        )
        aead = Aead(session_key, self.suite)

        def sealed(
            path: str, request_aad: bytes, reply_aad: bytes, body: dict[str, Any]
        ) -> dict[str, Any]:
            ciphertext = aead.seal(
                json.dumps(body).encode(), request_aad + session_id, random=self.random
            )
            reply = self._post(
                path, {"v": 1, "session_id": session_id.hex(), "ciphertext": ciphertext.hex()}
            )
            opened: dict[str, Any] = json.loads(
                aead.open(bytes.fromhex(reply["ciphertext"]), reply_aad + session_id)
            )
            return opened

        ticket = sealed(
            "/v1/tickets",
            b"vitalchain/v1 ticket request",
            b"vitalchain/v1 ticket",
            {
                "v": 1,
                "object_id": self.object_id,
                "device_key": self.key.public_key.compressed.hex(),
                "pairing_code": pairing_code,
            },
        )
        token = bytes.fromhex(ticket["token"])
        domain = Domain(int(session["chain_id"]), session["trust_groups"])
        request = self.key.sign_digest(
            request_digest(domain, int(session["group_id"]), self.object_id, self.address, token)
        )
        result = sealed(
            "/v1/associations",
            b"vitalchain/v1 association request",
            b"vitalchain/v1 association",
            {
                "v": 1,
                "object_id": self.object_id,
                "token": token.hex(),
                "request": request.to_rsv().hex(),
            },
        )
        mqtt = MqttCredentials(**result["mqtt"]) if result.get("mqtt") else None
        self.attach(session_id, session_key, int(session["group_id"]))
        self.session = Onboarded(
            session_id,
            int(session["group_id"]),
            gateway,
            self.address,
            int(result["block_number"]),
            mqtt,
        )
        return self.session

    def attach(self, session_id: bytes, session_key: bytes, group_id: int) -> None:
        """Use an existing telemetry session (e.g. after a device restart)."""
        self._aead = Aead(session_key, self.suite)
        self.session_key = session_key
        self._header = b"VCm\x01" + session_id
        self._group_id = group_id

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
        payload = json.dumps(
            {
                "v": 1,
                "group": self._group_id,
                "device": self.address,
                "sent_at": now,
                "readings": [
                    {
                        "seq": self.next_seq(),
                        "vital": v.info.short,
                        "value": value,
                        "unit": v.info.unit,
                        "t": now,
                    }
                    for v, value in readings
                ],
            },
            separators=(",", ":"),
        ).encode()
        signature = self.key.sign(payload, READING_CONTEXT).to_rsv()
        if not self._ring:
            return self._header + self._aead.seal(
                payload + signature, self._header, random=self.random
            )
        # Anonymity on: ring-sign now, so an alert raised from this message needs no round
        # trip to the device (docs/spec/alert.md, "Who signs, and when").
        digest = hashlib.sha256(payload).digest()
        context = alert_context(self._group_id, digest)
        proof = RingProof(self._ring, ring.sign(digest, self._ring, self.key, context))
        header = RING_HEADER + self._header[4:]
        return header + self._aead.seal(
            proof.to_bytes() + payload + signature, header, random=self.random
        )

    # -- anonymity --------------------------------------------------------------------------------

    def use_ring(self, members: Sequence[PublicKey]) -> None:
        """Ring-sign every later message among ``members``; an empty ring turns this off."""
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
        response = self.http.get("/v1/ring", params={"size": others + 1})
        data: dict[str, Any] = response.json()
        if response.status_code >= 400:
            err = data.get("error", {})
            raise DeviceError(err.get("message", "ring refused"), code=err.get("code", "error"))
        me = self.key.public_key
        members = [PublicKey.from_bytes(bytes.fromhex(k)) for k in data["members"]]
        members = [*[m for m in members if m != me][:others], me]
        order = sorted(range(len(members)), key=lambda _: self.random(8))
        return [members[i] for i in order]

    def send(self, message: bytes) -> dict[str, Any]:
        """POST one data message; returns the gateway's acknowledgement."""
        if self.http is None:
            raise DeviceError("no HTTP client configured", code="no_transport")
        response = self.http.post(
            "/v1/telemetry", content=message, headers={"content-type": "application/octet-stream"}
        )
        data: dict[str, Any] = response.json()
        if response.status_code >= 400:
            err = data.get("error", {})
            raise DeviceError(
                err.get("message", "refused"), code=err.get("code"), status=response.status_code
            )
        return data
