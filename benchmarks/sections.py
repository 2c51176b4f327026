"""What sealing one block costs as it splits into consent-scope sections (block.md v2).

    .venv/bin/python benchmarks/sections.py [--runs R] [--readers N]

A block of 120 device messages sealed whole (one section, as every v1 block was) against the
same messages in 2, 3 and 6 sections: each section is encrypted under its own key and that key
wrapped (one ECDH) for each of its readers, so the cost grows with sections times readers.  The
runs alternate the sizes, so drift in the machine's speed falls on all of them alike; medians
and the ratio to one section, measured in the same run, are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

from vitalchain.crypto.block import SectionPlan, seal_block
from vitalchain.crypto.keys import PrivateKey
from vitalchain.wire.block import BlockEntry

MESSAGES = 120
SPLITS = (1, 2, 3, 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--readers", type=int, default=3, help="patient and providers")
    args = parser.parse_args()
    gateway = PrivateKey.generate()
    readers = [PrivateKey.generate().public_key for _ in range(args.readers)]
    device = "0x" + "11" * 20
    entries = [
        BlockEntry(device, b'{"v":1,"n":%d,"pad":"%s"}' % (i, b"x" * 200), b"\x02" * 65)
        for i in range(MESSAGES)
    ]

    def seal(k: int) -> float:
        per = MESSAGES // k
        plans = [
            SectionPlan(1 << (j + 1), per, entries[j * per : (j + 1) * per], readers)
            for j in range(k)
        ]
        start = time.perf_counter()
        seal_block(gateway, group_id=1, patient=gateway.address, number=1, previous=bytes(32),
                   leaf_index=0, sealed_at_ms=1, sections=plans)  # fmt: skip
        return time.perf_counter() - start

    times: dict[int, list[float]] = {k: [] for k in SPLITS}
    for _ in range(args.runs):
        for k in SPLITS:
            times[k].append(seal(k))
    base = statistics.median(times[1])
    print(f"| sections | seal one block of {MESSAGES} messages, median | ratio to 1 section |")
    print("|---|---|---|")
    for k in SPLITS:
        median = statistics.median(times[k])
        print(f"| {k} | {median * 1000:.2f} ms | {median / base:.2f} |")


if __name__ == "__main__":
    main()
