"""``vitalchain gateway run`` off the documented path (issue 12 items 4, 9, 18, 19).

Each refusal is one line on stderr ending in its code, exit 2, no traceback, and happens before
anything is deployed or stored.  Nothing here serves for real: the successful start (its
banner, SIGTERM) is tests/integration/test_cli_gateway_run.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from tests.support.cli import NOWHERE, invoke, one_line
from vitalchain.cli.gateway import build_settings
from vitalchain.gateway.startup import CHAIN_RECORD, DataDirLock


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return invoke("gateway", "run", *args, env=env)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# -- settings: the environment counts, options override --------------------------------------------


def test_an_option_not_given_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALCHAIN_GATEWAY_PORT", "9123")
    monkeypatch.setenv("VITALCHAIN_GATEWAY_GROUP_ID", "42")
    monkeypatch.setenv("VITALCHAIN_GATEWAY_MQTT", "false")
    settings = build_settings({"port": None, "group_id": None, "mqtt": None, "host": None})
    assert (settings.port, settings.group_id, settings.mqtt) == (9123, 42, False)
    assert build_settings({"port": 9200, "mqtt": True}).port == 9200
    assert build_settings({"port": 9200, "mqtt": True}).mqtt is True


def test_the_environment_reaches_gateway_run(tmp_path: Path, busy_port: int) -> None:
    """The old CLI passed its own default (8700) and so ignored VITALCHAIN_GATEWAY_PORT:
    here the variable names a busy port, and the refusal names that port."""
    result = run(
        "--data-dir",
        str(tmp_path / "gw"),
        env={"VITALCHAIN_GATEWAY_PORT": str(busy_port)},
    )
    one_line(result, "port_in_use", f"127.0.0.1:{busy_port}")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VITALCHAIN_GATEWAY_PORT", "abc"),
        ("VITALCHAIN_GATEWAY_PORT", "-1"),
        ("VITALCHAIN_GATEWAY_PORT", "70000"),
        ("VITALCHAIN_GATEWAY_GROUP_ID", "0"),
        ("VITALCHAIN_GATEWAY_MQTT", "maybe"),
        ("VITALCHAIN_GATEWAY_RATE_PER_S", "-3"),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    one_line(run("--data-dir", str(tmp_path), env={variable: value}), "invalid_setting", variable)


def test_a_json_setting_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path), env={"VITALCHAIN_GATEWAY_SUITES": "{nope"})
    one_line(result, "invalid_setting", "suites")


def test_an_unknown_gateway_variable_is_refused_not_ignored(tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path), env={"VITALCHAIN_GATEWAY_PROT": "8800"})
    one_line(result, "unknown_setting", "VITALCHAIN_GATEWAY_PROT")


def test_a_bad_rpc_url_in_the_environment_is_refused(tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path), env={"VITALCHAIN_GATEWAY_RPC_URL": "localhost"})
    one_line(result, "invalid_url", "VITALCHAIN_GATEWAY_RPC_URL")


# -- the admin token ---------------------------------------------------------------------------------


def test_the_admin_token_flag_is_gone(tmp_path: Path) -> None:
    token = "a-token-in-the-process-list-01234"
    line = one_line(
        run("--admin-token", token), "admin_token_on_command_line", "--admin-token-file"
    )
    assert token not in line


def test_admin_token_file_problems(tmp_path: Path) -> None:
    one_line(
        run("--admin-token-file", str(tmp_path / "none")), "unreadable_file", "--admin-token-file"
    )
    one_line(run("--admin-token-file", str(tmp_path)), "unreadable_file", "--admin-token-file")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    one_line(run("--admin-token-file", str(empty)), "empty_admin_token")
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    line = one_line(run("--admin-token-file", str(short)), "invalid_setting", "16 bytes")
    assert "hunter2" not in line
    line = one_line(
        run("--data-dir", str(tmp_path), env={"VITALCHAIN_GATEWAY_ADMIN_TOKEN": "hunter2"}),
        "invalid_setting",
        "VITALCHAIN_GATEWAY_ADMIN_TOKEN",
    )
    assert "hunter2" not in line


# -- start-up refusals: before anything is deployed or stored ------------------------------------------


def test_an_unreachable_node_is_one_line_and_nothing_is_deployed(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    result = run("--rpc-url", NOWHERE, "--data-dir", str(data), "--port", "0", "--no-mqtt")
    one_line(result, "chain_unavailable", NOWHERE, "cannot start the gateway")
    assert not (data / "deployment.json").exists()
    assert not (data / CHAIN_RECORD).exists()


def test_a_busy_port_is_found_before_the_chain_is_touched(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "gw"
    result = run("--port", str(busy_port), "--data-dir", str(data), "--rpc-url", NOWHERE)
    one_line(result, "port_in_use", str(busy_port))  # not chain_unavailable: the port came first
    assert not data.exists()


def test_a_second_gateway_on_a_data_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    with DataDirLock.acquire(data):
        result = run("--data-dir", str(data), "--port", "0", "--rpc-url", NOWHERE)
    one_line(result, "data_dir_locked", str(data))


def test_a_data_directory_of_another_chain_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    data.mkdir()
    record = {
        "v": 1,
        "type": "vitalchain-chain-record",
        "chain_id": 31337,
        "genesis_hash": "0x" + "00" * 32,
        "addresses": {},
        "embedded": False,
    }
    (data / CHAIN_RECORD).write_text(json.dumps(record))
    result = run("--data-dir", str(data), "--port", "0", "--no-mqtt")
    one_line(result, "chain_mismatch", "--reset-data", "chain ID 31337")
    assert json.loads((data / CHAIN_RECORD).read_text()) == record  # untouched


# -- the data directory option ------------------------------------------------------------------------


def test_data_directory_paths(tmp_path: Path) -> None:
    one_line(run("--data-dir", str(tmp_path / "no" / "gw")), "parent_missing", "--data-dir")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line(run("--data-dir", str(a_file)), "not_a_directory", "--data-dir")
    one_line(
        run(env={"VITALCHAIN_GATEWAY_DATA_DIR": str(tmp_path / "no" / "gw")}),
        "parent_missing",
        "VITALCHAIN_GATEWAY_DATA_DIR",
    )


def test_every_setting_is_documented() -> None:
    """docs/cli.md has a row for every GatewaySettings field (its variable, default, meaning),
    and no row for a setting that is gone (alert_ack_timeout_s, issue 13)."""
    import re

    from vitalchain.gateway.settings import GatewaySettings

    doc = (Path(__file__).resolve().parents[3] / "docs" / "cli.md").read_text()
    table = doc[doc.index("#### Settings") :]
    missing = [f for f in GatewaySettings.model_fields if f"`{f.upper()}`" not in table]
    assert not missing, f"document these settings in docs/cli.md: {missing}"
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    listed = {name.lower() for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row)}
    gone = sorted(listed - set(GatewaySettings.model_fields))
    assert not gone, f"docs/cli.md lists settings that do not exist: {gone}"
