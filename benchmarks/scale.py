"""The scale curve (issue 16 item 4): ingest rate and gateway memory as enrolled devices grow.

    .venv/bin/python benchmarks/scale.py [--sizes 1000 10000 100000] [--active 1000]
        [--messages 4000] [--repeats 3] [--threads 4] [--no-history] [--no-control]
        [--write] [--doc PATH]

For each size N, a data directory is filled by a **bulk enrolment that bypasses onboarding**:
N active telemetry sessions written straight into the gateway's state database
(``GatewayState.add_sessions``, one transaction), and one stored reading per device written
straight into the journal (``Store.submit``, not through the checks), so every enrolled
device has a seq book to load as after a real history.  Then, in a fresh process per size
(so one size's memory does not carry into the next), a ``Gateway`` on the embedded chain
starts on that directory: it loads the sessions and books the way every start does.  The
associations are not put on chain (N transactions would take far longer than the run): the
device registry is fed directly (``DeviceRegistry.mark_active``, what an association does
once the chain accepted it).

``--active`` devices drawn at random from the enrolled set then send single-reading messages
through the real ingest path, ``IngestCore.submit`` (every check, the journal's group commit,
a signed receipt; what ``Gateway.ingest`` and the MQTT bridge call), from ``--threads``
threads with 64 acknowledgements outstanding each, no transport (HTTP's own cost does not change
with N).  Messages are prepared before the clock starts; the first message of each active
device is sent before it too (its book and rate bucket are made then).  Reported per size:
the median of ``--repeats`` timed rounds, its ratio to the smallest size, and the same rate as
a share of raw ECDSA verifications measured in the same process (the machine's speed drifts
with its load); and the gateway's resident memory (VmRSS from /proc/self/status) grown from
just before the gateway started to after the enrolled set was loaded, per enrolled device,
both raw and net of a gateway's fixed cost (the same growth with no device enrolled), and
where that memory goes, object by object.  A control row runs the largest size again with an
empty journal, to tell what the enrolled devices cost the gateway from what the stored
history costs the store.  Sizes are interleaved over the passes (see :func:`all_sizes`).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import DOCS, write_section  # beside this script

if TYPE_CHECKING:
    from vitalchain.wire.telemetry import Ack

GROUP = 4242
SEED = b"vitalchain-scale"
ONE_DAY_S = 86400
WINDOW = 64  # acknowledgements outstanding per sending thread (the device SDK's MQTT window)


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def derived(kind: bytes, i: int, size: int = 32) -> bytes:
    """Every enrolled device's secrets follow from its index, so the process that sends as a
    device needs to keep nothing for the others."""
    return hashlib.sha256(SEED + kind + i.to_bytes(8, "big")).digest()[:size]


def patient_of(i: int) -> str:
    """A patient per device, EIP-55 as every address the gateway holds (the threshold policy
    reads and caches each patient's bands from the chain by it)."""
    from vitalchain.wire.address import to_checksum_address

    return to_checksum_address(derived(b"patient", i, 20))


# --- bulk enrolment (this process) -------------------------------------------------------------


def enrol_bulk(data_dir: Path, count: int, *, history: bool = True) -> float:
    """Write ``count`` active sessions and (``history``) one stored reading per device,
    bypassing onboarding and the ingest checks, as the module says; seconds taken."""
    from vitalchain.crypto import PrivateKey
    from vitalchain.crypto.aead import DEFAULT_SUITE
    from vitalchain.gateway.state import GatewayState, Session, SessionState
    from vitalchain.store import Message, Reading, open_store
    from vitalchain.vitals import Vital

    start = time.perf_counter()
    now = int(time.time())
    state = GatewayState(data_dir / "gateway.db")
    store = open_store(data_dir)
    try:

        def sessions() -> Iterator[Session]:
            for i in range(count):
                key = PrivateKey(derived(b"device", i))
                yield Session(
                    derived(b"session", i, 16), key.address, key.public_key.compressed,
                    100_000 + i, DEFAULT_SUITE, derived(b"key", i), now, now + ONE_DAY_S,
                    SessionState.ACTIVE, 0, None, patient_of(i),
                )  # fmt: skip
                enrolled.append((key.address, i))

        enrolled: list[tuple[str, int]] = []
        state.add_sessions(sessions())
        at_ms = now * 1000 - 60_000
        futures = [
            store.submit(
                Message(
                    derived(b"history", i),
                    device,
                    GROUP,
                    patient_of(i),
                    at_ms,
                    b"bulk-enrolled history",
                    b"\0" * 65,
                    (Reading(0, Vital.SPO2, 97.0, at_ms),),
                )
            )
            for device, i in (enrolled if history else [])
        ]
        for future in futures:
            future.result()
    finally:
        store.close()
        state.close()
    return time.perf_counter() - start


# --- one size, in its own process --------------------------------------------------------------


def raw_verify_rate() -> float:
    import coincurve

    sk = coincurve.PrivateKey()
    digest = os.urandom(32)
    sig = sk.sign(digest, hasher=None)
    pk = sk.public_key
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(2000):
            pk.verify(sig, digest, hasher=None)
        best = max(best, 2000 / (time.perf_counter() - t))
    return best


def measure(data_dir: Path, size: int, active: int, messages: int, repeats: int, threads: int,
            seed: int, pass_no: int = 0) -> dict[str, Any]:  # fmt: skip
    """Start a gateway on ``data_dir`` (``size`` devices enrolled), measure, stop it.  Pass
    ``pass_no`` sends seqs of its own (a later pass's readings are new, not replays)."""
    from pydantic import SecretStr

    from vitalchain.crypto import PrivateKey
    from vitalchain.device.client import DeviceClient
    from vitalchain.gateway.service import Gateway
    from vitalchain.gateway.settings import GatewaySettings
    from vitalchain.ledger import ChainOutbox, EmbeddedBackend, Ledger
    from vitalchain.ledger.watcher import ChainWatcher
    from vitalchain.node import settle_heap
    from vitalchain.store.files import private_database
    from vitalchain.vitals import Vital

    settings = GatewaySettings(
        data_dir=data_dir, admin_token=SecretStr("scale-benchmark-token"), mqtt=False,
        group_id=GROUP, rate_per_s=1e9, rate_burst=10**9,
    )  # fmt: skip
    master = PrivateKey.generate()
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    (data_dir / "outbox.db").unlink(missing_ok=True)  # a new chain and master each pass
    outbox = ChainOutbox(ledger, master, private_database(data_dir / "outbox.db"))
    outbox.start()
    ledger.fund(master.address)
    watcher = ChainWatcher(ledger.events, poll_s=settings.revocation_poll_s)
    verify_rate = raw_verify_rate()
    gc.collect()
    before = rss_kb()
    started = time.perf_counter()
    gateway = Gateway(settings, master, ledger, outbox=outbox, watcher=watcher)
    start_s = time.perf_counter() - started
    try:
        gateway.start()
        watcher.start()
        for i in range(size):  # the associations, fed to the registry (not on chain)
            gateway.registry.mark_active(PrivateKey(derived(b"device", i)).address)
        settle_heap()  # as node.serve does before serving
        enrolled = rss_kb()
        loaded = len(gateway.ingest_core.sessions())
        if loaded != size:
            raise RuntimeError(f"the gateway loaded {loaded} sessions of {size}")

        chosen = random.Random(seed).sample(range(size), min(active, size))
        devices = []
        for i in chosen:
            key = PrivateKey(derived(b"device", i))
            first_seq = 1 + pass_no * 10**7
            device = DeviceClient(key, 100_000 + i, first_seq=first_seq, anonymity=False)
            device.attach(derived(b"session", i, 16), derived(b"key", i), GROUP)
            devices.append(device)
        lanes = [devices[t::threads] for t in range(threads)]

        core = gateway.ingest_core

        def run(batches: list[list[bytes]]) -> None:
            """Submit with up to WINDOW acknowledgements outstanding, as the MQTT bridge does,
            so the rate is the gateway's work and not one fsync per message."""
            for batch in batches:
                window: deque[Future[Ack]] = deque()
                for message in batch:
                    window.append(core.submit(message))
                    if len(window) >= WINDOW:
                        window.popleft().result()
                for acked in window:
                    acked.result()

        def round_of(count: int) -> float:
            """``count`` messages, each lane's devices in turn, prepared before the clock."""
            work = []
            for lane in lanes:
                share = count // threads
                work.append([[lane[k % len(lane)].prepare([(Vital.SPO2, 97.0)])
                              for k in range(share)]])  # fmt: skip
            workers = [threading.Thread(target=run, args=(w,)) for w in work]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            return sum(len(b) for w in work for b in w) / (time.perf_counter() - t0)

        first = [[d.prepare([(Vital.SPO2, 97.0)]) for d in lane] for lane in lanes]
        warm = [threading.Thread(target=run, args=([batch],)) for batch in first]
        for w in warm:
            w.start()
        for w in warm:
            w.join()
        rates = [round_of(messages) for _ in range(repeats)]
        after = rss_kb()
    finally:
        gateway.close()
        watcher.stop()
        outbox.close()
    return {
        "size": size,
        "rate": statistics.median(rates),
        "rates": rates,
        "verify_rate": verify_rate,
        "start_s": start_s,
        "rss_before_kb": before,
        "rss_enrolled_kb": enrolled,
        "rss_after_kb": after,
    }


# --- the parent: sizes in turn, the table -------------------------------------------------------


def child_run(args: argparse.Namespace, data_dir: Path, size: int, pass_no: int) -> dict[str, Any]:
    child = [
        sys.executable, __file__, "--measure", str(data_dir), "--sizes", str(size),
        "--active", str(args.active), "--messages", str(args.messages), "--repeats", "1",
        "--threads", str(args.threads), "--seed", str(args.seed), "--pass", str(pass_no),
    ]  # fmt: skip
    out = subprocess.run(child, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"size {size} failed:\n{out.stdout}{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def all_sizes(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Enrol every size, then ``--repeats`` passes over the sizes in turn, each a fresh
    gateway process: interleaved, so the machine's drift (others' work) falls on every size
    alike rather than on whichever ran last.  Medians over the passes."""
    cases = [(size, args.history) for size in args.sizes]
    if args.history and args.control:
        cases.append((args.sizes[-1], False))  # the control: same devices, empty journal
    with tempfile.TemporaryDirectory(prefix="vitalchain-scale-") as tmp:
        dirs = {case: Path(tmp) / f"{case[0]}-{int(case[1])}" for case in cases}
        enrol_s = {}
        for case, data_dir in dirs.items():
            data_dir.mkdir()
            enrol_s[case] = enrol_bulk(data_dir, case[0], history=case[1])
        runs: dict[tuple[int, bool], list[dict[str, Any]]] = {case: [] for case in cases}
        for pass_no in range(args.repeats):
            for case, data_dir in dirs.items():
                runs[case].append(child_run(args, data_dir, case[0], pass_no))
                print(f"# pass {pass_no + 1}, {case[0]:,} enrolled, history {case[1]}: "
                      f"{runs[case][-1]['rate']:,.0f} msg/s", file=sys.stderr)  # fmt: skip
    rows = []
    for case in cases:
        done = runs[case]
        row: dict[str, Any] = {"size": case[0], "history": case[1], "enrol_s": enrol_s[case]}
        for key in ("rate", "start_s", "rss_before_kb", "rss_enrolled_kb", "rss_after_kb"):
            row[key] = statistics.median(r[key] for r in done)
        row["share"] = statistics.median(r["rate"] / r["verify_rate"] for r in done)
        row["rates"] = [r["rate"] for r in done]
        rows.append(row)
    return rows


def table(args: argparse.Namespace, fixed: dict[str, Any], rows: list[dict[str, Any]],
          load: tuple[float, float, float], command: str) -> str:  # fmt: skip
    fixed_kb = fixed["rss_enrolled_kb"] - fixed["rss_before_kb"]
    control = [r for r in rows if r["history"] != args.history]
    rows = [r for r in rows if r["history"] == args.history]
    base = rows[0]
    control_row = control[0] if control else None
    lines = [
        f"`{command}`",
        "",
        f"Load average at the start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) "
        f"on {os.cpu_count()} cores, shared with other work. {args.active:,} active devices "
        f"drawn at random from the enrolled set, single-reading messages through "
        f"`IngestCore.submit` (the gateway's ingest path, in process, no transport; every "
        f"check, group commit and signed receipt) from {args.threads} threads with {WINDOW} "
        f"acknowledgements outstanding each; median of "
        f"{args.repeats} passes over the sizes in turn (a fresh gateway process each time), "
        f"each one timed round of {args.messages:,} messages. **Bulk enrolment, bypassing "
        "onboarding**: sessions written straight into the gateway's state DB, one stored reading "
        "per device straight into the journal, associations fed to the device registry "
        "(`mark_active`), not put on chain. The gateway then starts on that directory as any "
        "start does.",
        "",
        "| enrolled | gateway start | msg/s (median) | vs smallest | share of raw ECDSA "
        "verify | RSS growth | per enrolled device | net of fixed cost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows + control:
        grown = row["rss_enrolled_kb"] - row["rss_before_kb"]
        per = grown * 1024 / row["size"]
        net = (grown - fixed_kb) * 1024 / row["size"]
        lines.append(
            f"| {row['size']:,}{'' if row is not control_row else ', empty journal'} | "
            f"{row['start_s']:.2f} s | {row['rate']:,.0f} | "
            f"{row['rate'] / base['rate']:.2f} | {row['share']:.1%} | "
            f"{grown / 1024:.1f} MB | {per:,.0f} B | {net:,.0f} B |"
        )
    rates = [r["rate"] for r in rows]
    shares = [r["share"] for r in rows]
    if control_row is not None:
        lines += [
            "",
            f"The last row is a control: the same {control_row['size']:,} devices enrolled, "
            "none with a stored reading. Where it keeps the smallest size's rate and the row "
            "with history does not, the drop follows the journal's size (what the store keeps), "
            "not the number of enrolled devices the gateway holds.",
        ]
    spread = max(rates) / min(rates) - 1
    share_spread = max(shares) / min(shares) - 1
    big = rows[-1]
    net_big = ((big["rss_enrolled_kb"] - big["rss_before_kb"]) - fixed_kb) * 1024 / big["size"]
    lines += [
        "",
        f"A gateway's fixed cost (the same start with no device enrolled): "
        f"{fixed_kb / 1024:.1f} MB. Rate spread across sizes: {spread:.0%} in msg/s, "
        f"{share_spread:.0%} as a share of the verify rate (target: within 20 %: "
        f"{'met' if spread <= 0.20 or share_spread <= 0.20 else 'missed'}). "
        f"Memory per enrolled device at {big['size']:,}: {net_big:,.0f} B net (target ≤ 2 KB: "
        f"{'met' if net_big <= 2048 else 'missed'}). Bulk enrolment took "
        + ", ".join(f"{r['enrol_s']:.1f} s" for r in rows)
        + "; every size's passes: "
        + "; ".join(", ".join(f"{x:,.0f}" for x in r["rates"]) for r in rows)
        + " msg/s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=4000, help="messages per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the sizes")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one stored reading per enrolled device (--no-history: an empty journal)",
    )
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the largest size with an empty journal (what the history costs)",
    )
    parser.add_argument("--write", action="store_true", help="write into docs/benchmarks.md")
    parser.add_argument("--doc", type=Path, default=DOCS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--profile", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pass", dest="pass_no", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        print(json.dumps(profile(args.profile)))
        return
    if args.measure is not None:
        result = measure(args.measure, args.sizes[0], args.active, args.messages, args.repeats,
                         args.threads, args.seed, args.pass_no)  # fmt: skip
        print(json.dumps(result))
        return

    load = os.getloadavg()
    command = "python benchmarks/scale.py " + shlex.join(sys.argv[1:])
    fixed = measure_fixed(args)
    rows = all_sizes(args)
    text = table(args, fixed, rows, load, command.strip())
    child = [sys.executable, __file__, "--profile", str(max(args.sizes[-1] // 5, 1000))]
    out = subprocess.run(child, capture_output=True, text=True, timeout=600, check=True)
    kinds = json.loads(out.stdout.strip().splitlines()[-1])
    text += "\n\nWhere it goes (resident bytes per object, each built separately in a fresh "
    text += "process; the seq books are bounded at `MAX_BOOKS`, the rest is one per enrolled "
    text += "device):\n\n| per enrolled device | bytes |\n|---|---|\n"
    text += "\n".join(f"| {name} | {size:,.0f} |" for name, size in kinds.items())
    print(text)
    if args.write:
        write_section("scale", text, args.doc)


def profile(count: int) -> dict[str, float]:
    """Resident bytes per object of what a gateway keeps per enrolled device, each kind built
    ``count`` times in this fresh process, as ``Gateway._go_live`` and the registry build
    them: where the memory per device goes."""
    from vitalchain.crypto import Aead, PrivateKey
    from vitalchain.crypto.aead import DEFAULT_SUITE, USAGE_LIMITS, Usage
    from vitalchain.crypto.keys import PublicKey
    from vitalchain.gateway.ingest import KeyBudget, LiveSession, SeqBook

    keys = [PrivateKey(derived(b"device", i)).public_key.compressed for i in range(count)]
    one_aead = Aead(derived(b"key", 0))
    limit = USAGE_LIMITS[DEFAULT_SUITE]

    def session(i: int, aead: Aead) -> LiveSession:
        pk = PublicKey.from_bytes(keys[i])
        budget = KeyBudget(limit, Usage(), lambda used: None)
        return LiveSession(derived(b"session", i, 16), pk.address, GROUP, patient_of(i), pk,
                           aead, 2**31, budget)  # fmt: skip

    kinds: dict[str, Callable[[int], object]] = {
        "Aead (the session key's cipher, OpenSSL contexts)": lambda i: Aead(derived(b"key", i)),
        "rest of a LiveSession (public key, budget, IDs)": lambda i: session(i, one_aead),
        "seq book, one range": lambda i: SeqBook([(0, i)]),
        "registry entry (an address in a set)": lambda i: "0x" + keys[i][1:21].hex(),
    }
    out = {}
    for name, make in kinds.items():
        gc.collect()
        before = rss_kb()
        kept = [make(i) for i in range(count)]
        gc.collect()
        out[name] = (rss_kb() - before) * 1024 / count
        if name.startswith("registry"):
            out[name] += sys.getsizeof(set(kept)) / count  # the set's own slots
        del kept
    return out


def measure_fixed(args: argparse.Namespace) -> dict[str, Any]:
    """A gateway's own growth at start with nothing enrolled: no traffic either."""
    with tempfile.TemporaryDirectory(prefix="vitalchain-scale-") as tmp:
        child = [sys.executable, __file__, "--measure", tmp, "--sizes", "0", "--active", "0",
                 "--messages", "0", "--repeats", "1", "--threads", "1"]  # fmt: skip
        out = subprocess.run(child, capture_output=True, text=True, timeout=600, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"the empty gateway failed:\n{out.stdout}{out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


if __name__ == "__main__":
    main()
