"""Crypto benchmark: each recipe beside the raw library call it wraps, measured in one run.

    .venv/bin/python benchmarks/crypto.py [--quick] [--markdown]

Every figure is the median of several repeats (this machine is noisy); ratios compare
medians taken in the same run.  Targets (issue 2): SPECK128-CTR >= 300 MB/s on 1 MiB, ECDSA
sign/verify wrappers within 1.3x of raw coincurve, bLSAG verify with a ring of 16 <= 1.5 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import timeit
from collections.abc import Callable

import coincurve
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from vitalchain.crypto import Aead, PrivateKey, Suite, ring_sign, ring_verify, seal_for
from vitalchain.crypto.keys import message_digest
from vitalchain.crypto.primitives.h2c import hash_to_curve
from vitalchain.crypto.primitives.speck import SPECK128_256, Speck

REPEATS = 7


def median_seconds(fn: Callable[[], object], budget: float = 0.2) -> float:
    """Median seconds per call over REPEATS runs sized to about ``budget`` seconds each."""
    number = 1
    while True:
        if timeit.timeit(fn, number=number) >= budget / 5 or number >= 1 << 20:
            break
        number *= 2
    per_run = [t / number for t in timeit.repeat(fn, number=number, repeat=REPEATS)]
    return statistics.median(per_run)


def row(name: str, ours: float, raw: float | None, unit: str = "ops/s") -> list[str]:
    ratio = f"{ours / raw:.2f}x" if raw else ""
    return [name, f"{1 / ours:,.0f} {unit}", f"{1 / raw:,.0f} {unit}" if raw else "", ratio]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budget, for smoke runs")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    budget = 0.05 if args.quick else 0.2
    results: list[list[str]] = []
    verdicts: list[str] = []

    # --- ECDSA and ECDH: recipe vs raw coincurve --------------------------------------------
    key = PrivateKey.generate()
    raw_sk = coincurve.PrivateKey(key.secret)
    digest = os.urandom(32)
    sig = key.sign_digest(digest)
    der = raw_sk.sign(digest, hasher=None)
    raw_pk = coincurve.PublicKey(key.public_key.compressed)
    peer = PrivateKey.generate().public_key

    t_sign = median_seconds(lambda: key.sign_digest(digest), budget)
    t_sign_raw = median_seconds(lambda: raw_sk.sign_recoverable(digest, hasher=None), budget)
    t_verify = median_seconds(lambda: key.public_key.verify_digest(sig, digest), budget)
    t_verify_raw = median_seconds(lambda: raw_pk.verify(der, digest, hasher=None), budget)
    t_sign_msg = median_seconds(lambda: key.sign(b"x" * 100, b"vitalchain/reading"), budget)
    t_ecdh = median_seconds(lambda: key.ecdh(peer), budget)
    t_ecdh_raw = median_seconds(lambda: raw_sk.ecdh(peer.compressed), budget)
    results += [
        row("ECDSA sign (digest)", t_sign, t_sign_raw),
        row("ECDSA verify (digest)", t_verify, t_verify_raw),
        row("ECDSA sign (100 B message, keccak + context)", t_sign_msg, t_sign_raw),
        row("ECDH", t_ecdh, t_ecdh_raw),
    ]
    for name, ours, raw in (("sign", t_sign, t_sign_raw), ("verify", t_verify, t_verify_raw)):
        verdict = "met" if ours / raw <= 1.3 else "MISSED"
        verdicts.append(f"ECDSA {name} wrapper {ours / raw:.2f}x raw (target <= 1.3x): {verdict}")

    # --- AEAD: recipe vs raw pyca, and SPECK-CTR throughput ----------------------------------
    aead_key = os.urandom(32)
    nonce = os.urandom(12)
    speck = Speck(SPECK128_256, aead_key)
    throughput: list[list[str]] = []
    speck_mib = 0.0
    for size, label in ((100, "100 B"), (1024, "1 KiB"), (1 << 20, "1 MiB")):
        data = os.urandom(size)
        b = budget if size < (1 << 20) else budget * 2
        for suite, raw_fn in (
            (Suite.CHACHA20_POLY1305, ChaCha20Poly1305(aead_key).encrypt),
            (Suite.AES_256_GCM, AESGCM(aead_key).encrypt),
            (Suite.SPECK128_256_CTR_HMAC_SHA256, None),
        ):
            box = Aead(aead_key, suite)
            ours = median_seconds(lambda box=box, data=data: box.seal(data), b)
            raw = (
                median_seconds(lambda raw_fn=raw_fn, data=data: raw_fn(nonce, data, b""), b)
                if raw_fn
                else None
            )
            results.append(row(f"seal {suite.label} {label}", ours, raw))
            throughput.append([f"{suite.label} seal", label, f"{size / ours / 1e6:,.1f} MB/s"])
        t_ctr = median_seconds(lambda data=data: speck.ctr(nonce, data), b)
        t_chacha = median_seconds(
            lambda data=data: ChaCha20Poly1305(aead_key).encrypt(nonce, data, b""), b
        )
        throughput.append(["SPECK128/256-CTR (raw)", label, f"{size / t_ctr / 1e6:,.1f} MB/s"])
        throughput.append(
            [
                "ChaCha20-Poly1305 (raw pyca)",
                label,
                f"{size / t_chacha / 1e6:,.1f} MB/s  (SPECK/ChaCha {t_chacha / t_ctr:.2f}x)",
            ]
        )
        if size == 1 << 20:
            speck_mib = size / t_ctr / 1e6
    verdict = "met" if speck_mib >= 300 else "MISSED"
    verdicts.append(f"SPECK128-CTR on 1 MiB: {speck_mib:,.0f} MB/s (target >= 300): {verdict}")

    # --- Envelope: 3 recipients --------------------------------------------------------------
    recipients = [PrivateKey.generate().public_key for _ in range(3)]
    block = os.urandom(4096)
    t_env = median_seconds(lambda: seal_for(recipients, block), budget)
    env = seal_for(recipients, block)
    holder = PrivateKey.generate()
    env_h = seal_for([holder.public_key, *recipients], block)
    t_open = median_seconds(lambda: env_h.open(holder), budget)
    results.append(row("envelope seal, 4 KiB for 3 recipients", t_env, None))
    results.append(row("envelope open, 4 KiB", t_open, None))
    assert env.recipients

    # --- bLSAG -------------------------------------------------------------------------------
    ring_rows: list[list[str]] = []
    t_h2c = median_seconds(lambda: hash_to_curve(b"x" * 40, b"DST"), budget)
    verify16 = 0.0
    for n in (4, 8, 16, 64):
        keys = [PrivateKey.generate() for _ in range(n)]
        ring = [k.public_key for k in keys]
        s = ring_sign(b"alert", ring, keys[0], b"ctx")
        b = budget * (2 if n >= 16 else 1)
        t_rs = median_seconds(
            lambda ring=ring, keys=keys: ring_sign(b"alert", ring, keys[0], b"ctx"), b
        )
        t_rv = median_seconds(lambda ring=ring, s=s: ring_verify(b"alert", ring, s, b"ctx"), b)
        ring_rows.append(
            [str(n), f"{t_rs * 1e3:.2f} ms", f"{t_rv * 1e3:.2f} ms", f"{t_rv / n * 1e6:.0f} us"]
        )
        if n == 16:
            verify16 = t_rv
    verdicts.append(
        f"bLSAG verify, ring 16: {verify16 * 1e3:.2f} ms (target <= 1.5 ms): "
        f"{'met' if verify16 <= 1.5e-3 else f'MISSED by {verify16 / 1.5e-3:.1f}x'}"
    )
    floor = [
        ["hash_to_curve (RFC 9380, per member)", f"{t_h2c * 1e6:.0f} us"],
        [
            "coincurve tweak_mul (x4 per member)",
            f"{median_seconds(lambda: raw_pk.multiply(digest), budget) * 1e6:.0f} us",
        ],
        [
            "digest of keccak context (sign overhead)",
            f"{median_seconds(lambda: message_digest(b'x' * 100, b'ctx'), budget) * 1e6:.1f} us",
        ],
    ]

    _print(
        args.markdown,
        "Recipes vs the raw call they wrap (median)",
        ["operation", "vitalchain", "raw library", "time ratio"],
        results,
    )
    _print(
        args.markdown, "Symmetric throughput (median)", ["cipher", "size", "throughput"], throughput
    )
    _print(
        args.markdown,
        "bLSAG ring signatures (median)",
        ["ring size", "sign", "verify", "verify per member"],
        ring_rows,
    )
    _print(args.markdown, "Where ring verification time goes", ["step", "median"], floor)
    print()
    for v in verdicts:
        print(("- " if args.markdown else "") + v)


def _print(markdown: bool, title: str, head: list[str], rows: list[list[str]]) -> None:
    print()
    if markdown:
        print(f"### {title}\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    print(title)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    for r in [head, *rows]:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)))


if __name__ == "__main__":
    main()
