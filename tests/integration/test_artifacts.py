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


def test_the_forge_that_make_runs_reports_failure() -> None:
    """``make test`` runs ``forge test``: a failing forge must fail it.  The npm wrapper
    (node_modules/.bin/forge) exits 0 whatever forge returns, so contracts.mk runs the
    platform binary; a command forge does not know must exit non-zero through it."""
    import subprocess

    forge = subprocess.run(
        ["make", "-s", "-f", "contracts.mk", "forge-path"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert forge.endswith("/bin/forge")
    assert ".bin/forge" not in forge
    failed = subprocess.run([forge, "no-such-command"], cwd=ROOT, capture_output=True)
    assert failed.returncode != 0
    ok = subprocess.run([forge, "--version"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0
    assert "forge" in ok.stdout.lower()
