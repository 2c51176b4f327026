"""Crypto benchmark: each recipe beside the raw library call it wraps, measured in one run.

    .venv/bin/python benchmarks/crypto.py [--quick] [--markdown] [--write]

Every figure is the median of several repeats (this machine is noisy); ratios compare
medians taken in the same run.  Targets (issue 2): SPECK128-CTR >= 300 MB/s on 1 MiB, ECDSA
sign/verify wrappers within 1.3x of raw coincurve.  Issue 16: bLSAG sign and verify with a
ring of 16 in at most the time of 40 raw ECDSA verifications, as a ratio taken in the same run
(the machine's speed drifts 2-3x between runs), with the per-step profile.  ``--write`` puts
the bLSAG part into docs/benchmarks.md's "ring" section (benchmarks/report.py).
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
from vitalchain.crypto import ring as ring_module
from vitalchain.crypto.primitives.h2c import hash_to_curve
from vitalchain.crypto.primitives.speck import SPECK128_256, Speck

REPEATS = 7
RING_TARGET = 40  # issue 16: ring-16 sign and verify <= 40 raw ECDSA verifications


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
    parser.add_argument(
        "--write", action="store_true", help='write the bLSAG part into docs/benchmarks.md ("ring")'
    )
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

    # --- bLSAG ---------------------------------------------------------------------------------
    ring_tables, ring_verdicts = ring_benchmarks(
        budget, lambda: raw_pk.verify(der, digest, hasher=None)
    )
    verdicts += ring_verdicts

    _print(
        args.markdown,
        "Recipes vs the raw call they wrap (median)",
        ["operation", "vitalchain", "raw library", "time ratio"],
        results,
    )
    _print(
        args.markdown, "Symmetric throughput (median)", ["cipher", "size", "throughput"], throughput
    )
    for title, head, rows in ring_tables:
        _print(args.markdown, title, head, rows)
    print()
    for v in verdicts:
        print(("- " if args.markdown else "") + v)
    if args.write:
        from report import write_section  # beside this script

        command = "    .venv/bin/python benchmarks/crypto.py" + (" --quick" if args.quick else "")
        text = [
            "### bLSAG ring signatures (issue 16: faster bLSAG)",
            "",
            "Written by this command (medians; ratios to one raw coincurve ECDSA verification",
            "timed back to back in the same run):",
            "",
            command,
            "",
        ]
        for title, head, rows in ring_tables:
            text += [f"#### {title}", "", _markdown(head, rows), ""]
        text += ["- " + v for v in ring_verdicts]
        text += ["", RING_NOTES]
        write_section("ring", "\n".join(text))


Table = tuple[str, list[str], list[list[str]]]

RING_NOTES = """\
What changed (issue 16, item 2), and why the 40x target is missed:

- **Hash-to-curve in C** (`crypto/primitives/_h2c.c`): SHA-256 expand_message_xmd, SSWU and
  the 3-isogeny on 5x52-bit limbs, both maps sharing one inversion; libsecp256k1 adds Q0 + Q1.
  It was 49 to 151 us per member with gmpy2 (1.8 to 5.6 ECDSA verifications), now the row
  above.  Checked against the RFC 9380 vectors, a pure-Python reference and noble-curves.
- **c·K + r·G as one libsecp256k1 call**, through ECDSA public-key recovery:
  `recover((K.x, c·K.x), recid, -r·K.x) = c·K + r·G` (`ring._mul_add_g`), instead of a
  multiplication plus `tweak_add` (itself a full multiplication pass).
- **No re-parsing**: the loop keeps libsecp256k1's parsed structs; Hp(ctx ‖ K) is cached per
  (context, member) in a bounded LRU.  The cache rarely helps the pipeline: alert contexts are
  per payload (`wire.alert.alert_context`), so the first verification of an alert is the cold
  figure.  Cold is the one that counts.
- **The signer's secret scalars** (key image k·H, nonce a·H) now go through libsecp256k1's
  constant-time ECDH ladder instead of the variable-time `tweak_mul`.
- **What is left**: r·H + c·I needs a double-scalar multiplication with two arbitrary bases,
  and libsecp256k1's public API has none (recovery and verification fix one base to G; MuSig's
  multi-multiplication fixes the coefficients).  So it stays two `tweak_mul` and an addition,
  about 1.8 verifications per member, and the multiplication and challenge steps alone come to
  the "floor" line above: about 50 verifications for 16 members, before Hp and Python overhead.
  Reaching 40 needs a two-base Strauss multiplication (libsecp256k1's internal
  `secp256k1_ecmult_multi_var`, not exported), i.e. linking libsecp256k1's source or writing
  point arithmetic by hand, which this project does not do.  Signatures are byte-for-byte what
  the previous code produced (same nonces, same bytes; the ring tests and vectors pass).
- **Before and after, once, side by side** (the pre-change ring.py and gmpy2 hash-to-curve kept
  aside, ring of 16, ratios to one ECDSA verification in the same process): by time, verify
  96x before, 71x cold and 56x warm after; sign 101x, 70x and 59x.  By callgrind instruction
  counts, which this VM's noise does not move: verify 80x before, 61x cold and 51x warm after;
  sign 81x, 61x and 52x."""


def ring_benchmarks(
    budget: float, raw_verify: Callable[[], object]
) -> tuple[list[Table], list[str]]:
    """bLSAG timings as multiples of one raw ECDSA verification, and where the time goes.

    "warm": the Hp(ctx ‖ K) cache (ring.py, an LRU per context and member) already holds the
    ring, as when one signature is checked again; "cold": the cache is cleared before every
    call, so each member pays its hash-to-curve.  Cold is what a new alert costs, since alert
    contexts are per payload.
    """
    from vitalchain.crypto.primitives import _h2c
    from vitalchain.crypto.primitives.h2c import expand_message_xmd

    def cold(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            ring_module._hash_point.cache_clear()
            return fn()

        return run

    rows: list[list[str]] = []
    ratios: dict[str, float] = {}
    for n in (4, 8, 16, 64):
        keys = [PrivateKey.generate() for _ in range(n)]
        ring = [k.public_key for k in keys]
        s = ring_sign(b"alert", ring, keys[0], b"ctx")

        def sign(ring=ring, keys=keys) -> object:
            return ring_sign(b"alert", ring, keys[0], b"ctx")

        def verify(ring=ring, s=s) -> object:
            return ring_verify(b"alert", ring, s, b"ctx")

        b = budget * (2 if n >= 16 else 1)
        if n == 16:
            timed = {
                "sign warm": paired(sign, raw_verify, b),
                "sign cold": paired(cold(sign), raw_verify, b),
                "verify warm": paired(verify, raw_verify, b),
                "verify cold": paired(cold(verify), raw_verify, b),
            }
            ratios = {k: v[2] for k, v in timed.items()}
            t = {k: v[0] for k, v in timed.items()}
        else:
            t = {
                "sign warm": median_seconds(sign, b),
                "sign cold": median_seconds(cold(sign), b),
                "verify warm": median_seconds(verify, b),
                "verify cold": median_seconds(cold(verify), b),
            }
        rows.append(
            [str(n)]
            + [
                f"{t[k] * 1e3:.2f} ms"
                for k in ("sign warm", "sign cold", "verify warm", "verify cold")
            ]
            + [f"{t['verify warm'] / n * 1e6:.0f} us"]
        )
    sizes: Table = (
        "bLSAG ring signatures (median; warm = Hp cache holds the ring, cold = cleared each call)",
        ["ring size", "sign warm", "sign cold", "verify warm", "verify cold", "verify per member"],
        rows,
    )

    # Per-member steps of ring-16 verification, each timed alone, beside one ECDSA verification.
    keys = [PrivateKey.generate() for _ in range(16)]
    ring = [k.public_key for k in keys]
    sig = ring_sign(b"alert", ring, keys[0], b"ctx")
    ctx = ring_module._context_prefix(b"ctx")
    member = ring_module._Member.of(ring[5])
    hash_input = ctx + member.compressed
    base = ring_module._hash_point(ctx, member.compressed).public_key
    image = coincurve.PublicKey(sig.key_image)
    c, r = sig.c0, sig.responses[5]
    cb, rb = c.to_bytes(32, "big"), r.to_bytes(32, "big")
    left = ring_module._mul_add_g(member, c, r)
    steps = [
        (
            "Hp(ctx ‖ K): RFC 9380 hash-to-curve, Q0 + Q1 by libsecp256k1 (cold only)",
            lambda: hash_to_curve(hash_input, ring_module.KEY_IMAGE_DST),
        ),
        (
            "  of which C: xmd (SHA-256), SSWU and isogeny for Q0, Q1",
            lambda: _h2c.hash_to_curve_xy(hash_input, ring_module.KEY_IMAGE_DST),
        ),
        (
            "  of which C: expand_message_xmd alone",
            lambda: expand_message_xmd(hash_input, ring_module.KEY_IMAGE_DST, 96),
        ),
        ("c·K + r·G: one ECDSA-recovery call", lambda: ring_module._mul_add_g(member, c, r)),
        (
            "  (before issue 16: c·K, then + r·G: two calls)",
            lambda: ring[5].raw.multiply(cb).add(rb),
        ),
        (
            "r·H + c·I: two tweak_mul + one add",
            lambda: ring_module._add(
                ring_module._mul(base, rb), ring_module._mul(image.public_key, cb)
            ),
        ),
        (
            "challenge: two serialisations + SHA-512",
            lambda: ring_module._challenge(b"p" * 32, left, left),
        ),
    ]
    # Each step is timed back to back with one raw verification, repeat by repeat, and the
    # ratio is the median of those per-repeat ratios, so the VM's drift cancels out.
    profile: list[list[str]] = []
    counted = 0.0
    t_raw = []
    for name, fn in steps:
        t_step, t_r, ratio = paired(fn, raw_verify, budget)
        t_raw.append(t_r)
        if name.startswith(("c·K", "r·H", "challenge")):
            counted += ratio
        profile.append([name, f"{t_step * 1e6:.1f} us", f"{ratio:.2f}"])
    rest = ratios["verify warm"] / 16 - counted
    profile.append(["rest (ring checks, prefix hash, loop), warm", "", f"{rest:.2f}"])
    profile.append(
        [
            "one raw ECDSA verification (coincurve)",
            f"{statistics.median(t_raw) * 1e6:.1f} us",
            "1.00",
        ]
    )
    floor = counted * 16
    where: Table = (
        "Where ring-16 verification time goes, per member (median; ratio paired per repeat)",
        ["step", "time", "ECDSA verifications"],
        profile,
    )
    verdicts = []
    for op in ("verify", "sign"):
        warm, cold_ratio = ratios[f"{op} warm"], ratios[f"{op} cold"]
        verdict = (
            "met"
            if cold_ratio <= RING_TARGET
            else ("met warm only" if warm <= RING_TARGET else "MISSED")
        )
        verdicts.append(
            f"bLSAG {op}, ring 16: {warm:.1f}x one ECDSA verification warm, {cold_ratio:.1f}x cold "
            f"(target <= {RING_TARGET}x; 92x verify before issue 16): {verdict}"
        )
    verdicts.append(
        f"floor of the public libsecp256k1 API: the per-member multiplication and challenge "
        f"steps above alone are {floor:.1f} ECDSA verifications for a ring of 16"
    )
    return [sizes, where], verdicts


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _print(markdown: bool, title: str, head: list[str], rows: list[list[str]]) -> None:
    print()
    if markdown:
        print(f"### {title}\n")
        print(_markdown(head, rows))
        return
    print(title)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    for r in [head, *rows]:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)))


if __name__ == "__main__":
    main()
