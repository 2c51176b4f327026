"""A readable trace of vitalchain's cryptography, end to end, on real keys and data.

This is what ``make demo`` runs until the full system demo exists: a wearable signs and
encrypts a reading, the gateway verifies it, seals a block for the patient and a provider,
ring-signs an alert, and proves the block's inclusion in the Merkle log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from vitalchain.crypto import (
    Aead,
    CompactRange,
    MerkleTree,
    PrivateKey,
    RingSignature,
    Suite,
    generate_key,
    key_image,
    leaf_hash,
    ring_sign,
    ring_verify,
    seal_for,
    verify_consistency,
    verify_inclusion,
)
from vitalchain.errors import DecryptionError, InvalidProof, InvalidSignature

T = TypeVar("T")

READING_CONTEXT = b"vitalchain/walkthrough/reading"


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1e3


def run(console: Console | None = None) -> dict[str, object]:
    """Run every step, print the trace, and return a summary (tests assert on it)."""
    out = console or Console()
    summary: dict[str, object] = {}

    out.rule("[bold]1. Identities (secp256k1, Ethereum addresses)")
    device = PrivateKey.generate()
    gateway = PrivateKey.generate()
    patient = PrivateKey.generate()
    cardiologist = PrivateKey.generate()
    nurse = PrivateKey.generate()
    table = Table("role", "address")
    for role, key in [
        ("wearable (BP cuff)", device),
        ("gateway / cluster head", gateway),
        ("patient", patient),
        ("cardiologist", cardiologist),
        ("nurse", nurse),
    ]:
        table.add_row(role, key.address)
    out.print(table)

    out.rule("[bold]2. Device: hash-then-sign, then encrypt under the session key")
    reading = {
        "vital": "blood_pressure",
        "systolic": 128,
        "diastolic": 84,
        "unit": "mm[Hg]",
        "seq": 1,
    }
    payload = json.dumps(reading, sort_keys=True).encode()
    signature, t_sign = _timed(lambda: device.sign(payload, READING_CONTEXT))
    session_key = device.ecdh(gateway.public_key)
    out.print(f"reading            {payload.decode()}")
    out.print(f"signature          {signature.to_rsv().hex()[:32]}…  ({t_sign:.2f} ms)")
    agreed = session_key == gateway.ecdh(device.public_key)
    out.print(f"ECDH session key   derived on both sides: {agreed}")
    for suite in (Suite.CHACHA20_POLY1305, Suite.SPECK128_256_CTR_HMAC_SHA256):
        box = Aead(session_key, suite)
        sealed = box.seal(payload + signature.to_bytes(), b"group-1")
        out.print(f"{suite.label:<30} {len(sealed)} bytes on the wire: {sealed[:20].hex()}…")
        opened = box.open(sealed, b"group-1")
        device.public_key.verify(signature, opened[: len(payload)], READING_CONTEXT)
    out.print("[green]gateway: decrypted and verified the device signature with both suites")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    try:
        Aead(session_key, Suite.SPECK128_256_CTR_HMAC_SHA256).open(bytes(tampered), b"group-1")
    except DecryptionError as exc:
        out.print(f"[yellow]one flipped bit → refused: {exc} (code {exc.code})")
        summary["tamper_refused"] = True

    out.rule("[bold]3. Double encryption: one block, wrapped for patient and cardiologist")
    block = json.dumps({"block": 1, "readings": [reading] * 10}).encode()
    env = seal_for([patient.public_key, cardiologist.public_key], block, b"block-1")
    out.print(f"envelope           {len(env.to_bytes())} bytes, {len(env.stanzas)} wrapped keys")
    assert env.open(cardiologist, b"block-1") == block
    out.print("[green]cardiologist opened the block")
    wider = env.with_recipient(patient, nurse.public_key)
    out.print(
        f"patient adds nurse: {len(wider.stanzas)} wrapped keys, payload re-encrypted: "
        f"{wider.payload != env.payload}"
    )
    assert wider.open(nurse, b"block-1") == block
    summary["envelope_recipients"] = len(wider.stanzas)

    out.rule("[bold]4. Anonymous alert: bLSAG ring signature among the group's devices")
    devices = [device, *(PrivateKey.generate() for _ in range(7))]
    ring = [d.public_key for d in devices]
    alert = b'{"alert":"bp_high","severity":2}'
    context = b"alert:group-1:0001"
    sig_ring, t_ring = _timed(lambda: ring_sign(alert, ring, device, context))
    _, t_verify = _timed(lambda: ring_verify(alert, ring, sig_ring, context))
    out.print(f"ring of {len(ring)}; sign {t_ring:.1f} ms, verify {t_verify:.1f} ms")
    out.print(f"key image          {sig_ring.key_image.hex()[:32]}…  (on chain; must be unique)")
    replay = ring_sign(alert, ring, device, context)
    out.print(
        f"same device, same context → same key image (replay caught): {replay.links_to(sig_ring)}"
    )
    other = ring_sign(alert, ring, device, b"alert:group-1:0002")
    out.print(f"same device, next alert   → linked: {other.links_to(sig_ring)}")
    assert RingSignature.from_bytes(sig_ring.to_bytes()) == sig_ring
    assert sig_ring.key_image == key_image(device, context)
    try:
        ring_verify(b"tampered alert", ring, sig_ring, context)
    except InvalidSignature as exc:
        out.print(f"[yellow]changed alert → refused: {exc}")
    summary["ring_size"] = len(ring)

    out.rule("[bold]5. Merkle log (RFC 9162): anchor, inclusion and consistency")
    tree = MerkleTree()
    blocks = [Aead(generate_key()).seal(f"block {i}".encode()) for i in range(13)]
    for b in blocks[:8]:
        tree.append(b)
    old_root = tree.root()
    for b in blocks[8:]:
        tree.append(b)
    proof = tree.inclusion_proof(5)
    verify_inclusion(leaf_hash(blocks[5]), proof, tree.root())
    out.print(f"root of 13 blocks  {tree.root().hex()}")
    out.print(
        f"inclusion proof for block 5: {len(proof.path)} hashes, {len(proof.to_bytes())} bytes ✓"
    )
    verify_consistency(tree.consistency_proof(8), old_root, tree.root())
    out.print("consistency 8 → 13 ✓ (the log only grew)")
    compact = CompactRange.of(tree.leaf(i) for i in range(len(tree)))
    assert compact.root() == tree.root()
    out.print(
        f"the sealer holds only {len(compact.hashes)} subtree roots for 13 blocks"
        " (a compact range, one per one bit of 13 = 0b1101); same root ✓"
    )
    try:
        verify_inclusion(leaf_hash(blocks[5] + b"!"), proof, tree.root())
    except InvalidProof as exc:
        out.print(f"[yellow]a changed block → refused: {exc}")
        summary["tampered_block_caught"] = True
    summary["log_size"] = len(tree)
    return summary
