"""The ABIs and bytecode shipped in the package are exactly what the sources compile to."""

from __future__ import annotations

import json

from tests.support.artifacts import ROOT, assert_script_passes, assert_sources_unchanged

ARTIFACTS = ROOT / "src" / "vitalchain" / "ledger" / "artifacts"


def test_manifest_hashes_match_the_sources() -> None:
    """Fast guard: a source edited without re-exporting is caught before compiling anything."""
    manifest = json.loads((ARTIFACTS / "manifest.json").read_text())
    sources = manifest["sources"]
    assert sources, "manifest lists no sources"
    assert_sources_unchanged(sources, "`make contracts-artifacts`")


def test_recompiling_reproduces_the_shipped_artifacts() -> None:
    assert_script_passes("scripts/export_artifacts.py", "--check", timeout=1200)
