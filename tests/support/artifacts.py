"""Checks that a compiled artifact is what its sources give: the recorded source hashes, and a
recompile by the script that exported it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def assert_sources_unchanged(sources: dict[str, str], remedy: str) -> None:
    """Each source file still has the SHA-256 recorded at export; else say how to re-export."""
    for rel, digest in sources.items():
        actual = hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()
        assert actual == digest, f"{rel} changed: run {remedy}"


def assert_script_passes(script: str, *args: str, timeout: float) -> str:
    """``python ROOT/script ARGS`` exits 0 (forge is npm's, in node_modules); its output."""
    env = os.environ | {
        "FORGE": str(ROOT / "node_modules" / ".bin" / "forge"),
        "PYTHONUNBUFFERED": "1",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def doc_section(doc: str, name: str) -> str:
    """The text a benchmark's ``--write`` put between its markers (benchmarks/report.py)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    assert begin in doc, f"no {name} section written"
    return doc.split(begin, 1)[1].split(end, 1)[0]
