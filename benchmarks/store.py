"""Store benchmark: ingest, sealing, anchoring gas per reading, proofs, provider fetch, decrypt.

    .venv/bin/python benchmarks/store.py [--blocks N] [--seal-runs R] [--runs R]
                                         [--messages N] [--only store] [--ab DIR]

- Messages appended to the journal per second (10 readings each, every one committed with
  ``synchronous=FULL`` before its caller returns), by one caller and by 8 concurrent callers
  (the group commit shares one fsync among whatever has arrived).
- Blocks sealed per second on each backend (SQLite + files; a real PostgreSQL started here),
  with 120 readings in 12 messages per block, the key wrapped for the patient and a provider.
- Anchoring gas per reading at 1k, 10k and 100k readings per anchor (one anchor transaction
  whatever it covers; steady-state figures from receipts on the embedded chain).
- Inclusion and consistency proof sizes and verification times at those sizes.
- A provider's fetch (challenge, signed request, consent check on chain) and decryption of one
  block, end to end through the access API.
Medians throughout.

``--ab DIR`` instead compares sealing with other store modules, alternating the two (order
swapped each round) in one process, on both backends: DIR holds ``oldjournal.py``,
``oldsqlite.py`` and ``oldpostgres.py`` (e.g. the modules of an earlier commit, their imports
brought up to date), whose ``SqliteJournal``, ``SqliteStore`` and ``PostgresStore`` are put
under the same :class:`GatewayStore` as the tree's.  It prints each side's median and the
median of the per-round ratios (the machine's speed drifts between rounds, not within one).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import shutil
import statistics
import tempfile
import threading
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from vitalchain.crypto import PrivateKey, keccak256
from vitalchain.crypto.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from vitalchain.ledger import ANVIL_DEV_KEY, ChainOutbox, EmbeddedBackend, Ledger, RpcBackend
from vitalchain.ledger.consent import ConsentView
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.sealing.sealer import Sealer, SealingPolicy
from vitalchain.services.anvil import run_anvil
from vitalchain.store import GatewayStore, Message, Reading, SqliteJournal, SqliteStore, open_store
from vitalchain.store.base import Store
from vitalchain.store.files import private_database
from vitalchain.vitals import Vital

READINGS_PER_MESSAGE = 10
MESSAGES_PER_BLOCK = 12
TOKEN = "benchmark-admin-token"  # the gateway refuses admin tokens under 16 bytes
_seq = itertools.count(1)


def median_us(fn: Callable[[], object], repeat: int = 7) -> float:
    number = 1
    while timeit.timeit(fn, number=number) < 0.05 and number < 1 << 16:
        number *= 2
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(t / number for t in times) * 1e6


def fill(store: Store, patient: str, blocks: int) -> None:
    for _ in range(blocks * MESSAGES_PER_BLOCK):
        seqs = [next(_seq) for _ in range(READINGS_PER_MESSAGE)]
        payload = json.dumps({"v": 1, "seqs": seqs}).encode()
        store.append(
            Message(
                hashlib.sha256(payload).digest(), "0xDevice", 1, patient, 0, payload, b"\x01" * 65,
                tuple(Reading(s, Vital.SPO2, 97.0, 0) for s in seqs),
            )
        )  # fmt: skip


def ingest_rate(store: Store, callers: int, messages: int) -> float:
    """Messages/s appended by ``callers`` threads, each waiting for its own commit."""
    per = messages // callers
    batches = []
    for c in range(callers):
        batch = []
        for _ in range(per):
            seqs = [next(_seq) for _ in range(READINGS_PER_MESSAGE)]
            payload = json.dumps({"v": 1, "seqs": seqs}).encode()
            batch.append(
                Message(
                    hashlib.sha256(payload).digest(), f"0xIngest{c}", 1, "0xPatient", 0, payload,
                    b"\x01" * 65, tuple(Reading(s, Vital.SPO2, 97.0, 0) for s in seqs),
                )
            )  # fmt: skip
        batches.append(batch)

    def run(batch: list[Message]) -> None:
        for m in batch:
            store.append(m)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * callers / (time.perf_counter() - start)


def spread(rates: list[float]) -> list[str]:
    return [f"{statistics.median(rates):,.0f}", f"{min(rates):,.0f} to {max(rates):,.0f}"]


def sealing_rate(store: Store, ledger: Ledger, blocks: int) -> float:
    patient, doctor, master = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    # Never started: the figure is sealing's, and nothing here is anchored.
    tmp = tempfile.mkdtemp()
    outbox = ChainOutbox(ledger, master, private_database(Path(tmp) / "outbox.db"))
    consent = ConsentView(ledger, ChainWatcher(ledger.events))  # never asked: see below
    policy = SealingPolicy(max_readings=120)
    sealer = Sealer(
        store=store,
        ledger=ledger,
        master=master,
        group_id=1,
        policy=policy,
        outbox=outbox,
        consent=consent,
    )
    # The chain's answers are cached per patient in practice; here they are fixed so the
    # figure is the store's and the cryptography's, not the embedded EVM's.
    readers = [patient.public_key, doctor.public_key]
    sealer.recipients = lambda patient, vitals: readers  # type: ignore[method-assign]
    fill(store, patient.address, blocks)
    start = time.perf_counter()
    sealed = sealer.seal_due()
    elapsed = time.perf_counter() - start
    outbox.close()
    shutil.rmtree(tmp)
    assert len(sealed) == blocks, len(sealed)
    return blocks / elapsed


def anchoring(ledger: Ledger) -> list[tuple[int, int, float]]:
    master = PrivateKey.generate()
    ledger.fund(master.address)
    ledger.create_group(master, 424242, 424242)
    # The group's first anchor creates its storage slots; the rows below are steady state.
    ledger.anchor(master, 424242, keccak256(b"first"), 1, 0)
    rows, size = [], 1
    for readings in (1_000, 10_000, 100_000):
        blocks = -(-readings // 120)
        root = keccak256(str(size).encode())
        gas = ledger.anchor(master, 424242, root, size + blocks, size).gas_used
        size += blocks
        rows.append((readings, gas, gas / readings))
    return rows


def proofs() -> list[list[str]]:
    rows = []
    for readings in (1_000, 10_000, 100_000):
        blocks = -(-readings // 120)
        tree = MerkleTree([leaf_hash(i.to_bytes(8, "big")) for i in range(blocks * 10)])
        n, old = len(tree), len(tree) - blocks
        inclusion = tree.inclusion_proof(n // 2, n)
        consistency = tree.consistency_proof(old, n)
        root, old_root = tree.root(), tree.root(old)
        leaf = tree.leaf(n // 2)
        t_inc = median_us(functools.partial(verify_inclusion, leaf, inclusion, root))
        t_con = median_us(functools.partial(verify_consistency, consistency, old_root, root))
        rows.append(
            [
                f"{readings:,} readings/anchor (log of {n:,} blocks, anchors every {blocks:,})",
                f"{len(inclusion.to_bytes())} B",
                f"{t_inc:.1f} us",
                f"{len(consistency.to_bytes())} B",
                f"{t_con:.1f} us",
            ]
        )
    return rows


def fetch_latency(runs: int, ledger: Ledger, admin: PrivateKey) -> tuple[float, float, float]:
    import warnings

    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from vitalchain.device.client import DeviceClient
    from vitalchain.device.simulator import enrol
    from vitalchain.gateway.settings import GatewaySettings
    from vitalchain.node import running_gateway
    from vitalchain.sdk.provider import ProviderClient

    with tempfile.TemporaryDirectory() as tmp:
        settings = GatewaySettings(
            data_dir=Path(tmp),
            admin_token=SecretStr(TOKEN),
            mqtt=False,
            preauth_burst=10**6,  # one challenge per fetch, all from this one client
        )
        node_cm = running_gateway(settings, ledger=ledger, background=False)
        with node_cm as node, TestClient(node.app()) as http:
            patient, doctor = PrivateKey.generate(), PrivateKey.generate()
            for key in (patient, doctor):
                ledger.fund(key.address)
                ledger.publish_key(key)
            ledger.register_provider(admin, doctor.address)
            ledger.grant(patient, doctor.address, Vital.SPO2.bit, ledger.timestamp() + 86400)
            device = DeviceClient(PrivateKey.generate(), 5, http=http)
            device.onboard(enrol(http, TOKEN, patient.address))
            for _ in range(MESSAGES_PER_BLOCK):
                device.send(device.prepare([(Vital.SPO2, 97.0)] * READINGS_PER_MESSAGE))
            node.sealer.seal_due()
            client = ProviderClient(doctor, http)
            fetches, decrypts = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                (fetched,) = client.fetch(settings.group_id, patient.address, number=1)
                t1 = time.perf_counter()
                fetched.open(doctor)
                t2 = time.perf_counter()
                fetches.append(t1 - t0)
                decrypts.append(t2 - t1)
            # The one chain read the access API makes per granted request, measured alone.
            scope = Vital.SPO2.bit
            chain_ms = median_us(lambda: ledger.has_access(patient.address, doctor.address, scope))
            chain_ms /= 1e3
            return statistics.median(fetches) * 1e3, chain_ms, statistics.median(decrypts) * 1e3


def sealing_ab(old_dir: Path, blocks: int, rounds: int) -> None:
    """Sealing rates, other store modules (``old_dir``) against the tree's, interleaved."""
    import importlib
    import sys

    import psycopg

    from vitalchain.services.postgres import LocalPostgres
    from vitalchain.store.postgres import PostgresStore

    sys.path.insert(0, str(old_dir))
    old = tuple(
        getattr(importlib.import_module(module), name)
        for module, name in (("oldjournal", "SqliteJournal"), ("oldsqlite", "SqliteStore"),
                             ("oldpostgres", "PostgresStore"))
    )  # fmt: skip
    sides: dict[str, tuple[type, ...]] = {
        "old": old,
        "new": (SqliteJournal, SqliteStore, PostgresStore),
    }
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    rates: dict[tuple[str, str], list[float]] = {}
    databases = itertools.count(1)
    with LocalPostgres() as pg:
        for r in range(rounds):
            for backend in ("SQLite + block files", "PostgreSQL (local, loopback)"):
                for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    journal, sqlite_store, postgres_store = sides[side]
                    tmp = Path(tempfile.mkdtemp())
                    if backend.startswith("SQLite"):
                        blocks_at = sqlite_store(tmp / "store.db")
                    else:
                        name = f"ab{next(databases)}"
                        with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
                            admin.execute(f"CREATE DATABASE {name}")
                        blocks_at = postgres_store(pg.dsn_for(name))
                    store = GatewayStore(journal(tmp / "journal.db"), blocks_at)
                    rates.setdefault((side, backend), []).append(
                        sealing_rate(store, ledger, blocks)
                    )
                    store.close()
                    shutil.rmtree(tmp)
    rows = []
    for backend in ("SQLite + block files", "PostgreSQL (local, loopback)"):
        a, b = rates["old", backend], rates["new", backend]
        ratio = statistics.median(n / o for o, n in zip(a, b, strict=True))
        by_round = " / ".join(f"{o:.0f}:{n:.0f}" for o, n in zip(a, b, strict=True))
        median_a, median_b = statistics.median(a), statistics.median(b)
        rows.append(
            [backend, f"{median_a:,.0f}", f"{median_b:,.0f}", f"{ratio - 1:+.0%}", by_round]
        )
    table(
        f"Blocks sealed per second, {old_dir} (old) against the tree (new), {rounds} interleaved"
        f" rounds of {blocks} blocks",
        ["backend", "old median", "new median", "per-round change (median)", "old:new by round"],
        rows,
    )


def table(title: str, head: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seal-runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000, help="per ingest run")
    parser.add_argument(
        "--only",
        choices=["all", "store"],
        default="all",
        help="store: ingest and sealing only (no anchoring, proofs, fetch)",
    )
    parser.add_argument(
        "--ab",
        type=Path,
        metavar="DIR",
        help="only sealing: the store modules in DIR (oldjournal.py, oldsqlite.py,"
        " oldpostgres.py) against the tree's, --seal-runs interleaved rounds",
    )
    args = parser.parse_args()
    if args.ab is not None:
        sealing_ab(args.ab, args.blocks, args.seal_runs)
        return
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())

    ingest = []
    for callers in (1, 8):
        runs = []
        for _ in range(args.seal_runs):
            with tempfile.TemporaryDirectory() as tmp:
                store = open_store(Path(tmp))
                runs.append(ingest_rate(store, callers, args.messages))
                store.close()
        ingest.append([f"{callers}", *spread(runs)])
    table(
        f"Journal ingest, messages/s ({args.seal_runs} runs of {args.messages} messages of"
        f" {READINGS_PER_MESSAGE} readings)",
        ["callers", "median messages/s", "min to max"],
        ingest,
    )

    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp))  # the journal, and SQLite + block files for blocks
        runs = [sealing_rate(store, ledger, args.blocks) for _ in range(args.seal_runs)]
        rates.append(["SQLite + block files", *spread(runs)])
        store.close()

    from vitalchain.services.postgres import LocalPostgres

    with LocalPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        pstore = open_store(Path(tmp), pg.dsn)  # the local journal, blocks in PostgreSQL
        runs = [sealing_rate(pstore, ledger, args.blocks) for _ in range(args.seal_runs)]
        rates.append(["PostgreSQL (local, loopback)", *spread(runs)])
        pstore.close()
    table(
        f"Blocks sealed per second ({args.seal_runs} runs of {args.blocks} blocks of 120"
        " readings, 2 readers each)",
        ["backend", "median blocks/s", "min to max"],
        rates,
    )
    if args.only == "store":
        return

    gas_rows = [[f"{r:,}", f"{g:,}", f"{per:.2f}"] for r, g, per in anchoring(ledger)]
    table(
        "Anchoring gas per reading (one transaction per anchor)",
        ["readings per anchor", "anchor gas", "gas per reading"],
        gas_rows,
    )

    table(
        "Proofs (120 readings per block)",
        ["size", "inclusion proof", "verify", "consistency proof", "verify"],
        proofs(),
    )
    rows = []
    admin = PrivateKey.generate()
    embedded = fetch_latency(args.runs, Ledger.deploy(EmbeddedBackend(), admin), admin)
    rows.append(["embedded EVM (py-evm)", *(f"{ms:.2f} ms" for ms in embedded)])
    with run_anvil() as url:
        anvil = Ledger.deploy(RpcBackend(url, funder=PrivateKey(ANVIL_DEV_KEY)), admin)
        rows.append(
            ["anvil (JSON-RPC)", *(f"{ms:.2f} ms" for ms in fetch_latency(args.runs, anvil, admin))]
        )
    table(
        "Provider fetch and decrypt (one block of 120 readings, access API in process)",
        ["chain", "fetch (challenge, signed request, consent, release)", "of which the consent"
         " view call", "decrypt (unwrap key, open payload)"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
