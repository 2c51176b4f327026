"""The ABIs and bytecode shipped in the package are exactly what the sources compile to."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "src" / "vitalchain" / "ledger" / "artifacts"


def test_manifest_hashes_match_the_sources() -> None:
    """Fast guard: a source edited without re-exporting is caught before compiling anything."""
    manifest = json.loads((ARTIFACTS / "manifest.json").read_text())
    sources = manifest["sources"]
    assert sources, "manifest lists no sources"
    for rel, digest in sources.items():
        actual = hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()
        assert actual == digest, f"{rel} changed: run `make contracts-artifacts`"


def test_recompiling_reproduces_the_shipped_artifacts() -> None:
    env = os.environ | {"FORGE": str(ROOT / "node_modules" / ".bin" / "forge")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_artifacts.py"), "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
