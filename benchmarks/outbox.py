"""The gateway-side CPU of one chain-outbox transaction (issue 13 item 7), on anvil.

Why: on anvil the chain's own work runs in another process, so what an on-chain write costs the
gateway is the client side alone (encoding, signing, JSON-RPC requests, receipt polls), and that
CPU takes the same GIL as ingest and alert delivery.  This measures it as process CPU time
(``time.process_time``) per ``recordAlert`` over ``--n`` transactions submitted to one
:class:`~vitalchain.ledger.outbox.ChainOutbox`, ``--repeats`` runs, median reported.

``--baseline SRC`` runs the same measurement, in a child interpreter each, against another
source tree (e.g. ``git archive HEAD src | tar -x -C /tmp/base``), interleaved with this tree's
runs, so both figures come from the same machine state and the ratio is fair.

    .venv/bin/python benchmarks/outbox.py --n 200 --repeats 3 --baseline /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(n: int) -> dict[str, float]:
    """One run on a fresh anvil: ``n`` recordAlert entries, CPU and wall per transaction."""
    from vitalchain.crypto import PrivateKey
    from vitalchain.ledger import ANVIL_DEV_KEY, ChainOutbox, Ledger, RpcBackend
    from vitalchain.services.anvil import run_anvil

    with run_anvil() as url, tempfile.TemporaryDirectory() as tmp:
        backend = RpcBackend(url, funder=PrivateKey(ANVIL_DEV_KEY))
        ledger = Ledger.deploy(backend, PrivateKey.generate())
        master = PrivateKey.generate()
        ledger.fund(master.address)
        gid = int.from_bytes(os.urandom(6), "big")
        ledger.create_group(master, gid, int.from_bytes(os.urandom(6), "big"))
        path = Path(tmp) / "outbox.db"
        path.touch(mode=0o600)
        outbox = ChainOutbox(ledger, master, path)
        outbox.start()
        try:

            def alert(i: int) -> None:
                image = b"\x02" + i.to_bytes(4, "big") + os.urandom(28)
                outbox.submit(
                    f"alert:{i}", "AlertRegistry", "recordAlert", gid, image,
                    os.urandom(32), os.urandom(32),
                )  # fmt: skip

            alert(-1 & 0xFFFF)  # warm up: first simulation, nonce read, connections
            outbox.drain(60)
            threads0 = _outbox_threads_cpu()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for i in range(n):
                alert(i)
                time.sleep(0.1)  # ~10 alert records a second, as in the alert benchmark
            outbox.drain(120)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            threads = _outbox_threads_cpu() - threads0
            if outbox.pending():
                raise SystemExit(f"{outbox.pending()} entries still pending")
            mined = ledger.alert_count(gid)
        finally:
            outbox.close()
            backend.close()
    if mined != n + 1:
        raise SystemExit(f"{mined} alerts recorded, expected {n + 1}")
    # The submit loop's own CPU (sleep, a SQLite insert) is counted too: it is the same in both.
    return {"cpu_ms_per_tx": 1000 * cpu / n, "outbox_ms_per_tx": 1000 * threads / n, "wall_s": wall}


def _outbox_threads_cpu() -> float:
    """CPU seconds of the outbox's own threads so far (Linux /proc, clock ticks)."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for thread in threading.enumerate():
        if thread.name in ("chain-outbox", "chain-receipts") and thread.native_id is not None:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _child(src: Path, n: int) -> dict[str, float]:
    # A copied tree has no node_modules beside it: its find_anvil falls back to PATH.
    path = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}", PATH=path)
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--n", str(n)],
        env=env, check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="transactions a run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another tree's src/ to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.n)))
        return
    trees = {"this tree": ROOT / "src"}
    if args.baseline:
        trees = {"baseline": args.baseline, **trees}
    runs: dict[str, list[float]] = {name: [] for name in trees}
    threads: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, src in trees.items():
            result = _child(src, args.n)
            runs[name].append(result["cpu_ms_per_tx"])
            threads[name].append(result["outbox_ms_per_tx"])
    load = os.getloadavg()[0]
    print(f"recordAlert on anvil, {args.n} transactions a run, load average {load:.1f}")
    medians = {}
    for name, values in runs.items():
        medians[name] = statistics.median(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:10s} process CPU per transaction: median {medians[name]:.2f} ms ({shown})")
        shown = ", ".join(f"{v:.2f}" for v in threads[name])
        median = statistics.median(threads[name])
        print(f"  {name:10s} outbox threads' CPU per transaction: median {median:.2f} ms ({shown})")
    if args.baseline:
        print(f"  ratio: {medians['baseline'] / medians['this tree']:.1f}x less CPU")


if __name__ == "__main__":
    main()
