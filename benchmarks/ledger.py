"""Ledger benchmark: association and anchor transactions per second, on each backend.

    .venv/bin/python benchmarks/ledger.py [--count N]

Each transaction is signed locally, simulated (gas estimate, which also decodes refusals),
sent, and waited for (its receipt), one at a time as a gateway does.  Figures are medians of
per-transaction wall time; gas is from the receipts.
"""

from __future__ import annotations

import argparse
import statistics
import time

from vitalchain.crypto import PrivateKey, keccak256
from vitalchain.ledger import ANVIL_DEV_KEY, EmbeddedBackend, Ledger, RpcBackend
from vitalchain.services.anvil import run_anvil


def measure(ledger: Ledger, count: int) -> dict[str, float]:
    master = PrivateKey.generate()
    ledger.fund(master.address)
    ledger.create_group(master, 1, 1)
    devices = [PrivateKey.generate() for _ in range(count)]
    assoc_times, assoc_gas = [], []
    for i, device in enumerate(devices):
        oid = 1000 + i
        start = time.perf_counter()
        token = ledger.issue_token(master, 1, oid, device.address)
        request = ledger.sign_association(device, 1, oid, token)
        result = ledger.associate(master, 1, oid, device.public_key, token, request)
        assoc_times.append(time.perf_counter() - start)
        assoc_gas.append(result.gas_used)
    anchor_times, anchor_gas = [], []
    for i in range(count):
        start = time.perf_counter()
        result = ledger.anchor(master, 1, keccak256(i.to_bytes(8, "big")), (i + 1) * 100, i * 100)
        anchor_times.append(time.perf_counter() - start)
        anchor_gas.append(result.gas_used)
    return {
        "associate_tx_s": 1 / statistics.median(assoc_times),
        "associate_gas": statistics.median(assoc_gas),
        "anchor_tx_s": 1 / statistics.median(anchor_times),
        "anchor_gas": statistics.median(anchor_gas),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    rows = []
    embedded = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    rows.append(("embedded (eth-tester + py-evm)", measure(embedded, args.count)))
    with run_anvil() as url:
        anvil = Ledger.deploy(
            RpcBackend(url, funder=PrivateKey(ANVIL_DEV_KEY)), PrivateKey.generate()
        )
        rows.append(("anvil (JSON-RPC, automine)", measure(anvil, args.count)))
    print(f"{args.count} sequential transactions of each kind per backend (median)\n")
    print("| backend | associate tx/s | associate gas | anchor tx/s | anchor gas |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['associate_tx_s']:.1f} | {r['associate_gas']:,.0f} | "
            f"{r['anchor_tx_s']:.1f} | {r['anchor_gas']:,.0f} |"
        )


if __name__ == "__main__":
    main()
