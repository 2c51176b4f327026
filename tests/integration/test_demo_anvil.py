"""``vitalchain demo --rpc-url``: the same demo against a real anvil node."""

from __future__ import annotations

from pathlib import Path

from tests.support.demo import assert_promises_kept, run_reduced


def test_the_reduced_demo_runs_on_anvil(anvil_url: str, tmp_path: Path) -> None:
    summary = run_reduced(tmp_path / "runs", "--rpc-url", anvil_url)
    assert summary["chain"] == anvil_url
    assert_promises_kept(summary)
