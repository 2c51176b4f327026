"""``vitalchain portal``: every bad argument refused by code, before anything is served."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.support.cli import NOWHERE, invoke, one_line


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "me.key"
    path.write_text(os.urandom(31).hex().rjust(64, "0"))  # a valid scalar (below the order)
    path.chmod(0o600)
    return path


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    result = invoke("portal", "--key", str(key_file(tmp_path)), "--role", "nurse")
    one_line(result, "invalid_role", "nurse", "provider or patient")


def test_a_missing_or_wrong_key_file_is_refused(tmp_path: Path) -> None:
    one_line(invoke("portal", "--key", str(tmp_path / "none.key")), "unreadable_file")
    (tmp_path / "junk.key").write_text("not a key")
    one_line(invoke("portal", "--key", str(tmp_path / "junk.key")), "not_a_key")


def test_a_gateway_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    result = invoke("portal", "--key", str(key_file(tmp_path)), "--gateway", "ftp://x")
    one_line(result, "invalid_url", "ftp://x")


def test_an_unreachable_gateway_fails_clearly(tmp_path: Path) -> None:
    result = invoke("portal", "--key", str(key_file(tmp_path)), "--gateway", NOWHERE, "--port", "0")
    one_line(result, "unreachable", exit_code=1)


def test_a_taken_port_fails_before_anything_is_contacted(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke(
            "portal", "--key", str(key_file(tmp_path)), "--gateway", NOWHERE, "--port", str(port)
        )
    one_line(result, "port_in_use", str(port), exit_code=1)


def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("portal", "--key", str(key_file(tmp_path)), "--port", "70000")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
