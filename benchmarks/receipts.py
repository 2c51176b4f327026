"""What the signed receipt (issue 17, docs/spec/receipt.md) costs the gateway per message.

    .venv/bin/python benchmarks/receipts.py [--messages N] [--rounds R] [--write]

The path a node runs: ``Gateway.ingest`` of prepared single-reading messages (verify, decrypt,
journal commit, acknowledgement), with the receipt (as shipped) and without it (the master key
taken out of the ingest core: the acknowledgement as it was before receipts).  The receipt is
made in one place, the ingest core's ``_acknowledge``, which runs on whichever thread settles
the commit; so the cost is that call's own CPU (``thread_time`` around it, on its thread),
with the receipt minus without, per message.  The whole-process CPU per message is printed
too, but the background sealer and journal threads make its difference noise.  The cost is
stated in ECDSA signatures of the same 108-byte object measured in the same run (the machine's
speed drifts 2-3x between runs, so only the ratio is a target: at or under 1).  Medians of
``rounds`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

from gateway import ONE, in_process_gateway  # benchmarks/: the script's directory is on sys.path
from report import write_section
from vitalchain.crypto import PrivateKey
from vitalchain.store import Message
from vitalchain.wire.receipt import RECEIPT_CONTEXT
from vitalchain.wire.telemetry import Ack


def sign_s(count: int) -> float:
    """CPU seconds of one ECDSA signature of a receipt-sized object under its context."""
    key = PrivateKey.generate()
    parts = [i.to_bytes(8, "big") * 13 + b"\x00" * 4 for i in range(count)]  # 108 bytes
    start = time.process_time()
    for part in parts:
        key.sign(part, RECEIPT_CONTEXT)
    return (time.process_time() - start) / count


def ingest_s(count: int, *, receipts: bool) -> tuple[float, float]:
    """CPU seconds per message through Gateway.ingest: the process's, and the
    acknowledgement's own (``_acknowledge``, timed on the thread that runs it)."""
    with in_process_gateway(devices=1) as (gateway, (device,)):
        core = gateway.ingest_core
        if not receipts:
            core._master = None  # the acknowledgement as before receipts
        acknowledge = core._acknowledge
        spent = [0.0]

        def timed(message: Message, seqs: list[int]) -> Ack:
            start = time.thread_time()
            try:
                return acknowledge(message, seqs)
            finally:
                spent[0] += time.thread_time() - start

        core._acknowledge = timed  # type: ignore[method-assign]
        messages = [device.prepare(ONE) for _ in range(count)]
        start = time.process_time()
        for message in messages:
            gateway.ingest(message)
        return (time.process_time() - start) / count, spent[0] / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    signs: list[float] = []
    with_r: list[float] = []
    without_r: list[float] = []
    ack_on: list[float] = []
    ack_off: list[float] = []
    for _ in range(args.rounds):  # interleaved, so a drift of the machine hits both alike
        signs.append(sign_s(args.messages))
        process, ack = ingest_s(args.messages, receipts=False)
        without_r.append(process)
        ack_off.append(ack)
        process, ack = ingest_s(args.messages, receipts=True)
        with_r.append(process)
        ack_on.append(ack)
    sign, on, off = (statistics.median(x) for x in (signs, with_r, without_r))
    a_on, a_off = statistics.median(ack_on), statistics.median(ack_off)
    ratios = [(w - o) / s for w, o, s in zip(ack_on, ack_off, signs, strict=True)]
    command = (
        f".venv/bin/python benchmarks/receipts.py --messages {args.messages} --rounds {args.rounds}"
    )
    rounds = ", ".join(f"{r:.2f}" for r in ratios)
    cost = f"{(a_on - a_off) * 1e6:.1f} µs = {statistics.median(ratios):.2f} signatures"
    text = f"""### Signed receipts: the gateway's cost per message (issue 17)

`{command}` (CPU time per single-reading message through `Gateway.ingest`;
medians of {args.rounds} interleaved rounds; target: the receipt at or under 1 ECDSA signature)

| | CPU per message |
|---|---|
| one ECDSA signature (coincurve, the receipt's 108 bytes under its context) | {sign * 1e6:.1f} µs |
| `_acknowledge`'s own CPU, with the receipt (as shipped) | {a_on * 1e6:.1f} µs |
| `_acknowledge` without it (as before receipts) | {a_off * 1e6:.1f} µs |
| **the receipt** | **{cost}** (each round: {rounds}) |
| the whole process, ingest with / without the receipt | {on * 1e6:.1f} / {off * 1e6:.1f} µs |

The whole-process figures include the gateway's background threads (the journal writer and
the sealer), whose CPU swings by more than a signature between rounds, so the receipt's cost is
timed where it is spent, in `_acknowledge` on the thread that settles the commit.

One receipt per acknowledgement: over HTTP and over MQTT each message is acknowledged, and so
signed, on its own. A cumulative MQTT acknowledgement (one signature over a device's run of
messages) is what would bring the cost per message below one signature; it is not built yet.
"""
    print(text)
    if args.write:
        write_section("receipts", text)


if __name__ == "__main__":
    main()
