"""Running the command line in-process (typer's CliRunner) and checking how it refuses."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from vitalchain.cli import app

NOWHERE = "http://127.0.0.1:9"  # discard: nothing listens, a connection is refused at once
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55
CLEAN_ENV: dict[str, str | None] = {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": None}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``vitalchain ARGS`` with no admin token from the caller's environment."""
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **(env or {})})


def text(result: Result) -> str:
    """The output with Rich's panel borders and line wrapping taken out."""
    return " ".join(result.output.replace("│", " ").split())


def exited(result: Result, exit_code: int, *words: str) -> None:
    """``exit_code`` (2 a usage error, 1 a failed operation), the words, no traceback."""
    out = text(result)
    assert result.exit_code == exit_code, out
    assert isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in out, (word, out)
    assert "Traceback" not in out


def one_line(result: Result, code: str, *words: str, exit_code: int = 2) -> str:
    """One line ``error: … (code)`` with the words in it, ``exit_code``, no traceback."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == exit_code, result.output
    assert len(lines) == 1, result.output
    (line,) = lines
    assert line.startswith("error: "), line
    assert line.endswith(f"({code})"), line
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in result.output
    return line
