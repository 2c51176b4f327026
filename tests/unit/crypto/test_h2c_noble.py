"""Cross-check: our RFC 9380 hash-to-curve against an independent implementation.

noble-curves (npm ``@noble/curves``, exact-pinned in package.json, installed by ``make setup``'s
``npm ci``) hashes the same inputs in ``tests/support/noble_h2c.mjs``.  Not skipped when Node or
the package is missing: ``make test`` provides both, so a missing one is a set-up failure.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

from vitalchain.crypto import PrivateKey
from vitalchain.crypto import ring as ring_module
from vitalchain.crypto.primitives.h2c import hash_to_curve

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tests" / "support" / "noble_h2c.mjs"


def _noble(cases: list[tuple[bytes, bytes]]) -> list[str]:
    node = shutil.which("node")
    assert node, "node is not on PATH (make setup needs it for the contracts too)"
    assert (ROOT / "node_modules" / "@noble" / "curves").is_dir(), "run make setup (npm ci)"
    result = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps([[m.hex(), d.hex()] for m, d in cases]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    answers: list[str] = json.loads(result.stdout)
    return answers


def test_hash_to_curve_matches_noble_curves() -> None:
    rng = random.Random(9380)
    quux = b"QUUX-V01-CS02-with-secp256k1_XMD:SHA-256_SSWU_RO_"
    cases = [(b"", quux), (b"abc", quux), (b"a" * 512, quux), (b"m", b"D" * 255)]
    cases += [
        (rng.randbytes(rng.randrange(0, 200)), rng.randbytes(rng.randrange(1, 64)))
        for _ in range(60)
    ]
    # and the inputs the ring signature really hashes: u16(len ctx) || ctx || member key
    ctx = ring_module._context_prefix(b"alert:group-7:episode-1")
    for _ in range(20):
        member = PrivateKey.generate().public_key.compressed
        cases.append((ctx + member, ring_module.KEY_IMAGE_DST))
    ours = [hash_to_curve(msg, dst).format().hex() for msg, dst in cases]
    assert _noble(cases) == ours
