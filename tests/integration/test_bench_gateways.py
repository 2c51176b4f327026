"""Issue 16's chain benchmarks, tiny: ``benchmarks/gateways.py`` (many gateways on one chain)
and ``benchmarks/baseline.py --write`` (chain capacity against Bubbles of Trust).

Each script runs as ``make bench`` runs it, on real anvil, PostgreSQL and gateway processes,
with sizes of seconds; its ``--write`` goes to a copy of docs/benchmarks.md, and the section it
writes must be there with its figures.  The scripts stop every process they start and fail if
one is left behind.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.artifacts import assert_script_passes, doc_section


def run_script(script: str, *args: str, timeout: float = 300) -> str:
    return assert_script_passes(f"benchmarks/{script}", *args, timeout=timeout)


def test_gateways_benchmark_runs_one_and_two_gateways_on_one_chain(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    out = run_script(
        "gateways.py", "--gateways", "1", "2", "--devices", "2", "--messages", "30",
        "--block-time", "0", "--anchor-every-s", "1", "--write", "--doc", str(doc),
    )  # fmt: skip
    section = doc_section(doc.read_text(), "gateways")
    assert section.strip() == out.strip()
    rows = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2, section
    assert all("anchor" in row for row in rows)  # each fleet's gateways anchored under load
    assert "association median 13" in section  # ~134,9xx gas, measured from the receipts
    assert "patients one chain carries" in section


def test_baseline_writes_chain_capacity_on_both_chains(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    out = run_script(
        "baseline.py", "--devices", "2", "--messages", "40", "--write", "--doc", str(doc)
    )
    section = doc_section(doc.read_text(), "baseline")
    assert section.strip() == out.strip()
    assert "Readings per 30M-gas block" in section
    assert "embedded (eth-tester + py-evm)" in section
    assert "anvil, a block every 1 s" in section
    capacity = [line for line in section.splitlines() if line.startswith("| 40 | measured")]
    assert len(capacity) == 1, section


def test_the_ingest_worker_benchmark_writes_its_table(tmp_path: Path) -> None:
    """``benchmarks/gateway.py --workers``: the gateway run with 0 and 2 ingest workers, HTTP
    and MQTT, one tiny round each; every row is there with its CPU ratio, and the 2-worker
    gateway really had its 2 workers (the script asserts it found them on the telemetry port)."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    out = run_script(
        "gateway.py", "--workers", "0", "2", "--rounds", "1", "--messages", "60",
        "--devices", "3", "--write", "--doc", str(doc),
    )  # fmt: skip
    section = doc_section(doc.read_text(), "ingest-workers")
    assert section.strip() == out.strip()
    rows = [line for line in section.splitlines() if line.startswith(("| 0 |", "| 2 |"))]
    assert len(rows) == 8, section  # 2 worker counts x HTTP, MQTT x 1, 10 readings
    assert all(row.count("x |") >= 2 for row in rows), rows
    assert "Raw coincurve ECDSA verifications/s" in section
