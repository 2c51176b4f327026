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


def _calls_for(fn: Callable[[], object], budget: float) -> int:
    number = 1
    while timeit.timeit(fn, number=number) < budget / 5 and number < 1 << 20:
        number *= 2
    return number


def median_seconds(fn: Callable[[], object], budget: float = 0.2) -> float:
    """Median seconds per call over REPEATS runs sized to about ``budget`` seconds each."""
    number = _calls_for(fn, budget)
    return statistics.median(t / number for t in timeit.repeat(fn, number=number, repeat=REPEATS))


def paired(
    ours: Callable[[], object], raw: Callable[[], object], budget: float = 0.2
) -> tuple[float, float, float]:
    """Medians of both, and the median of per-repeat ratios: each repeat times the two back to
    back, so drift in this VM's clock speed cancels out of the ratio."""
    n_ours, n_raw = _calls_for(ours, budget), _calls_for(raw, budget)
    t_ours, t_raw, ratios = [], [], []
    for _ in range(REPEATS):
        a = timeit.timeit(ours, number=n_ours) / n_ours
        b = timeit.timeit(raw, number=n_raw) / n_raw
        t_ours.append(a)
        t_raw.append(b)
        ratios.append(a / b)
    return statistics.median(t_ours), statistics.median(t_raw), statistics.median(ratios)


def row(name: str, ours: float, raw: float | None = None, ratio: float | None = None) -> list[str]:
    shown = f"{ratio:.2f}x" if ratio is not None else ""
    return [name, f"{1 / ours:,.0f} ops/s", f"{1 / raw:,.0f} ops/s" if raw else "", shown]


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

    sign = paired(
        lambda: key.sign_digest(digest),
        lambda: raw_sk.sign_recoverable(digest, hasher=None),
        budget,
    )
    verify = paired(
        lambda: key.public_key.verify_digest(sig, digest),
        lambda: raw_pk.verify(der, digest, hasher=None),
        budget,
    )
    sign_msg = paired(
        lambda: key.sign(b"x" * 100, b"vitalchain/reading"),
        lambda: raw_sk.sign_recoverable(digest, hasher=None),
        budget,
    )
    ecdh = paired(lambda: key.ecdh(peer), lambda: raw_sk.ecdh(peer.compressed), budget)
    results += [
        row("ECDSA sign (digest)", *sign),
        row("ECDSA verify (digest)", *verify),
        row("ECDSA sign (100 B message, keccak + context)", *sign_msg),
        row("ECDH", *ecdh),
    ]
    for name, (_, _, ratio) in (("sign", sign), ("verify", verify)):
        verdict = "met" if ratio <= 1.3 else "MISSED"
        verdicts.append(f"ECDSA {name} wrapper {ratio:.2f}x raw (target <= 1.3x): {verdict}")

    # --- AEAD: recipe vs raw pyca, and SPECK-CTR throughput ----------------------------------
    aead_key = os.urandom(32)
    nonce = os.urandom(12)
    speck = Speck(SPECK128_256, aead_key)
    chacha = ChaCha20Poly1305(aead_key)
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
            if raw_fn is None:
                ours = median_seconds(lambda box=box, data=data: box.seal(data), b)
                results.append(row(f"seal {suite.label} {label}", ours))
            else:
                ours, raw, ratio = paired(
                    lambda box=box, data=data: box.seal(data),
                    lambda raw_fn=raw_fn, data=data: raw_fn(nonce, data, b""),
                    b,
                )
                results.append(row(f"seal {suite.label} {label}", ours, raw, ratio))
            throughput.append([f"{suite.label} seal", label, f"{size / ours / 1e6:,.1f} MB/s"])
        t_ctr, t_chacha, ratio = paired(
            lambda data=data: speck.ctr(nonce, data),
            lambda data=data: chacha.encrypt(nonce, data, b""),
            b,
        )
        throughput.append(["SPECK128/256-CTR (raw)", label, f"{size / t_ctr / 1e6:,.1f} MB/s"])
        throughput.append(
            [
                "ChaCha20-Poly1305 (raw pyca)",
                label,
                f"{size / t_chacha / 1e6:,.1f} MB/s  (SPECK time / ChaCha time {ratio:.2f}x)",
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
    results.append(row("envelope seal, 4 KiB for 3 recipients", t_env))
    results.append(row("envelope open, 4 KiB", t_open))
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
