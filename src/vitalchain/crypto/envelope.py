"""Hybrid "double" encryption for one or many recipients (paper 000, Algorithms 1 and 3).

A fresh data key encrypts the payload once (Algorithm 1, ``Encrypt_sym``); the data key is
then wrapped for each recipient's secp256k1 public key (``Encrypt_asym``) with ECIES:
ephemeral ECDH, HKDF-SHA256, ChaCha20-Poly1305.  Adding a recipient wraps the same data key
again and leaves the payload bytes untouched.  Format: docs/spec/envelope.md.

The envelope also carries a commitment to the data key, so a recipient cannot be handed a
payload that opens differently under two keys (AEADs like Poly1305 are not key-committing).

Each stanza's wrap key encrypts once, under a zero nonce.  That is safe only while no wrap
key repeats with another data key, so the ephemeral scalar is hedged (Bellare et al., "Hedged
public-key encryption", Asiacrypt 2009): a keyed hash of the data key, the recipient and
fresh randomness.  A broken ``random`` can then repeat an ephemeral key only for the same
data key and recipient, which re-encrypts the same plaintext into the same stanza.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from vitalchain.crypto.aead import DEFAULT_SUITE, KEY_SIZE, NONCE_SIZE, Random, Suite, primitive
from vitalchain.crypto.keys import CURVE_ORDER, PrivateKey, PublicKey
from vitalchain.crypto.primitives.aead import hkdf_sha256
from vitalchain.errors import DecodeError, DecryptionError, InvalidKey
from vitalchain.wire.envelope import HEADER, MAX_RECIPIENTS, EnvelopeFrame, Stanza

__all__ = ["Envelope", "key_commitment", "seal_for"]

_WRAP_INFO = b"vitalchain/v1 envelope wrap"
_COMMIT_INFO = b"vitalchain/v1 envelope key commitment"
_EPHEMERAL_TAG = b"vitalchain/v1 envelope ephemeral"
_ZERO_NONCE = bytes(12)  # each wrap key encrypts one data key only: see _ephemeral


def _wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return hkdf_sha256(shared, 32, salt=ephemeral + recipient, info=_WRAP_INFO)


def key_commitment(data_key: bytes) -> bytes:
    """HMAC-SHA256 commitment to a data key (envelope.md): one key per payload, provably."""
    return hmac.new(data_key, _COMMIT_INFO, hashlib.sha256).digest()


def _ephemeral(data_key: bytes, recipient: PublicKey, random: Random) -> PrivateKey:
    """The stanza's ephemeral key, hedged against a bad ``random`` (envelope.md).

    ``e = 1 + (HMAC-SHA512(data_key, tag ‖ u8(32) ‖ z ‖ compressed(R)) mod (n - 1))`` with
    ``z = random(32)``.  The wrap key is HKDF(e·R, salt = E ‖ R), so a (wrap key, zero nonce)
    pair can recur only with the same ``e`` and ``R``; with ``e`` derived from the data key,
    that means the same plaintext, the same associated data and so a byte-identical stanza,
    never two messages under one key and nonce.  With good randomness ``e`` is fresh anyway.
    """
    fresh = random(32)
    digest = hmac.new(
        data_key,
        _EPHEMERAL_TAG + bytes([len(fresh)]) + fresh + recipient.compressed,
        hashlib.sha512,
    ).digest()
    scalar = 1 + int.from_bytes(digest, "big") % (CURVE_ORDER - 1)
    return PrivateKey(scalar.to_bytes(32, "big"))


def _stanza(data_key: bytes, recipient: PublicKey, random: Random) -> Stanza:
    ephemeral = _ephemeral(data_key, recipient, random)
    eph_pub = ephemeral.public_key.compressed
    key = _wrap_key(ephemeral.ecdh(recipient), eph_pub, recipient.compressed)
    wrapped = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, data_key, recipient.address_bytes)
    return Stanza(recipient.address_bytes, eph_pub, wrapped)


def _associated(suite: Suite, aad: bytes) -> bytes:
    """What the payload's AEAD authenticates: the header and suite byte, then the caller's."""
    return HEADER + bytes([suite]) + aad


@dataclass(frozen=True, slots=True)
class Envelope(EnvelopeFrame):
    """The wire's frame (its fields, ``encode`` and ``parse``) with a known suite and the
    cryptography that wraps, unwraps and opens it."""

    suite: Suite

    @property
    def recipients(self) -> list[bytes]:
        return [s.recipient for s in self.stanzas]

    def unwrap_key(self, key: PrivateKey) -> bytes:
        """The data key, if ``key`` is a recipient; DecryptionError otherwise."""
        me = key.public_key
        for stanza in self.stanzas:
            if stanza.recipient != me.address_bytes:
                continue
            try:
                eph = PublicKey.from_bytes(stanza.ephemeral)
            except InvalidKey:
                raise DecryptionError() from None
            wrap = _wrap_key(key.ecdh(eph), stanza.ephemeral, me.compressed)
            data_key = _open_wrapped(wrap, stanza.wrapped, me.address_bytes)
            if not hmac.compare_digest(key_commitment(data_key), self.commitment):
                raise DecryptionError()
            return data_key
        raise DecryptionError()

    def open(self, key: PrivateKey, aad: bytes = b"") -> bytes:
        """Algorithm 3: unwrap the data key with ``key``, then decrypt the payload."""
        return self.open_with_data_key(self.unwrap_key(key), aad)

    def open_with_data_key(self, data_key: bytes, aad: bytes = b"") -> bytes:
        if not hmac.compare_digest(key_commitment(data_key), self.commitment):
            raise DecryptionError()
        nonce, body = self.payload[:NONCE_SIZE], self.payload[NONCE_SIZE:]
        return primitive(self.suite, data_key).decrypt(nonce, body, _associated(self.suite, aad))

    def with_recipient(
        self, holder: PrivateKey, recipient: PublicKey, *, random: Random = os.urandom
    ) -> Envelope:
        """Wrap the data key for one more recipient; the payload is not re-encrypted."""
        if recipient.address_bytes in self.recipients:
            return self
        if len(self.stanzas) >= MAX_RECIPIENTS:
            raise ValueError(f"an envelope has at most {MAX_RECIPIENTS} recipients")
        data_key = self.unwrap_key(holder)
        return replace(self, stanzas=(*self.stanzas, _stanza(data_key, recipient, random)))

    def without_recipient(self, address: bytes) -> Envelope:
        """Drop a stanza.  This cannot take back a data key the recipient already unwrapped."""
        return replace(self, stanzas=tuple(s for s in self.stanzas if s.recipient != address))

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        frame = EnvelopeFrame.parse(data)
        try:
            suite = Suite(frame.suite)
        except ValueError:
            raise DecodeError("envelope: unknown AEAD suite", code="unknown_suite") from None
        return cls(suite, frame.stanzas, frame.commitment, frame.payload)


def _open_wrapped(wrap_key: bytes, wrapped: bytes, recipient: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, wrapped, recipient)
    except InvalidTag:
        raise DecryptionError() from None


def seal_for(
    recipients: Sequence[PublicKey],
    plaintext: bytes,
    aad: bytes = b"",
    *,
    suite: Suite = DEFAULT_SUITE,
    random: Random = os.urandom,
    data_key: bytes | None = None,
) -> Envelope:
    """Algorithm 1: encrypt once under a fresh data key, wrap it for every recipient.

    ``data_key`` exists for formats that must commit to the key before anything is encrypted
    (a sealed block puts the commitment in the header that is the payload's associated data,
    crypto/block.py).  The caller must then draw a fresh key for every envelope: two envelopes
    under one data key carry the same commitment, so whoever sees both links them, and a
    recipient of either can open both.  Leave it out and a fresh key is drawn here.
    """
    if not recipients:
        raise ValueError("an envelope needs at least one recipient")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValueError(f"an envelope has at most {MAX_RECIPIENTS} recipients")
    key = data_key if data_key is not None else random(KEY_SIZE)
    suite = Suite(suite)
    nonce = random(NONCE_SIZE)
    body = primitive(suite, key).encrypt(nonce, plaintext, _associated(suite, aad))
    unique: dict[bytes, PublicKey] = {r.address_bytes: r for r in recipients}
    stanzas = tuple(_stanza(key, r, random) for r in unique.values())
    return Envelope(suite, stanzas, key_commitment(key), nonce + body)
