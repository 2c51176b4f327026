"""``vitalchain demo`` on the embedded chain, reduced; and its refusals of bad arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.demo_checks import assert_promises_kept, run_reduced
from vitalchain.cli import app
from vitalchain.ledger.devnode import free_port


def test_the_reduced_demo_keeps_every_promise(tmp_path: Path) -> None:
    summary = run_reduced(tmp_path / "runs")
    assert summary["chain"].startswith("embedded")
    assert_promises_kept(summary)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patients", "1"], "--patients"),
        (["--gateways", "3", "--patients", "4"], "at least 2 per gateway"),
        (["--providers", "1"], "--providers"),
        (["--minutes", "0"], "--minutes"),
        (["--rpc-url", "ftp://127.0.0.1:1"], "http(s)://"),
        (["--rpc-url", f"http://127.0.0.1:{free_port()}"], "no Ethereum JSON-RPC node"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []  # no report folder for a refused run
