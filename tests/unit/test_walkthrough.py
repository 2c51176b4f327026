"""The crypto walkthrough that `make demo` prints runs end to end and catches its tampering."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from vitalchain.cli import app
from vitalchain.walkthrough import run


def test_walkthrough_summary() -> None:
    buf = io.StringIO()
    summary = run(Console(file=buf, width=120))
    assert summary == {
        "tamper_refused": True,
        "envelope_recipients": 3,
        "ring_size": 8,
        "tampered_block_caught": True,
        "log_size": 13,
    }
    text = buf.getvalue()
    assert "payload re-encrypted: False" in text
    assert "replay caught): True" in text


def test_cli_help_and_demo_command() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code != 0
