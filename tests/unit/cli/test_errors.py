"""Every bad argument gets one line ``error: … (code)``, exit 2, no traceback (issue 12, E).

Also the paths a command writes (item 21: no missing folder created silently, no directory
taken for a file, no file overwritten by surprise, an unwritable folder said so) and the
port check of ``chain start`` (item 19: a port in TIME_WAIT is free).  Nothing here needs a
chain or a gateway: each refusal happens before anything is contacted.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.support.cli import ADDRESS, NOWHERE, invoke, one_line
from vitalchain.crypto import PrivateKey
from vitalchain.services.ports import port_free

TYPO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"  # the last d in upper case
TOKEN = {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": "a-client-side-token-0123456789"}


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "me.key"
    path.write_text(PrivateKey.generate().secret.hex() + "\n")
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    names = ("TrustGroups", "KeyDirectory", "ConsentRegistry", "AnchorLog", "AlertRegistry")
    addresses = {n: "0x" + "22" * 20 for n in names}
    path.write_text(json.dumps({"chain_id": 31337, "block": 1, "addresses": addresses}))
    return path


# -- the sweep: one bad argument at a time ------------------------------------------------------------


def cases(key: Path, tmp: Path) -> list[tuple[list[str], str, str]]:
    """(arguments, code, a word the line must hold)."""
    k = str(key)
    patient = ("--patient", ADDRESS)
    fetch = ["provider", "fetch", "--key", k, *patient]
    return [
        # usage errors click finds
        (["nope"], "usage_error", "nope"),
        (["key", "address"], "missing_argument", "--key"),
        (["key", "address", "--key", k, "--bogus"], "unknown_option", "--bogus"),
        (["key", "address", "--key", k, "extra"], "usage_error", "extra"),
        # numbers: not integers, negative, out of range
        ([*fetch, "--group-id", "one"], "invalid_argument", "--group-id"),
        ([*fetch, "--group-id", "-1"], "invalid_argument", "--group-id"),
        ([*fetch, "--group-id", str(2**64)], "invalid_argument", "--group-id"),
        ([*fetch, "--block", "1.5"], "invalid_argument", "--block"),
        ([*fetch, "--after", "-3"], "invalid_argument", "--after"),
        (["chain", "start", "--port", "-1"], "invalid_argument", "--port"),
        (["chain", "start", "--port", "65536"], "invalid_argument", "--port"),
        (["gateway", "run", "--port", "http"], "invalid_argument", "--port"),
        (["gateway", "run", "--mqtt-port", "0"], "invalid_argument", "--mqtt-port"),
        (["gateway", "run", "--group-id", "0"], "invalid_argument", "--group-id"),
        (
            [
                "consent",
                "grant",
                "--key",
                k,
                "--provider",
                ADDRESS,
                "--vitals",
                "hr",
                "--days",
                "1e3",
            ],
            "invalid_argument",
            "--days",
        ),
        (["verify", *patient, "--group-id", "x", "--key", k], "invalid_argument", "--group-id"),
        (["alerts", "watch", "--key", k, "--count", "-2"], "invalid_argument", "--count"),
        (
            ["device", "enrol", *patient, "--out", str(tmp / "d.json"), "--object-id", "-1"],
            "invalid_argument",
            "--object-id",
        ),
        # addresses: malformed, wrong checksum
        ([*fetch[:4], "--patient", "0x12"], "invalid_address", "--patient"),
        ([*fetch[:4], "--patient", "12" * 20], "invalid_address", "--patient"),
        ([*fetch[:4], "--patient", "0x" + "zz" * 20], "invalid_address", "--patient"),
        ([*fetch[:4], "--patient", TYPO], "bad_checksum", "checksum"),
        (
            ["consent", "show", "--patient", ADDRESS, "--provider", TYPO],
            "bad_checksum",
            "--provider",
        ),
        (
            ["provider", "register", "--admin-key", k, "--provider", "bob"],
            "invalid_address",
            "--provider",
        ),
        (
            ["verify", "--patient", TYPO, "--group-id", "1", "--key", k],
            "bad_checksum",
            "--patient",
        ),
        # key files: missing, a directory, not hex, out of range
        (["key", "address", "--key", str(tmp / "none")], "unreadable_file", "--key"),
        (["key", "address", "--key", str(tmp)], "unreadable_file", "--key"),
        (["key", "publish", "--key", str(tmp / "none")], "unreadable_file", "--key"),
        # files: deployment, device
        (
            ["consent", "show", *patient, "--provider", ADDRESS, "--deployment", str(tmp / "x")],
            "unreadable_file",
            "--deployment",
        ),
        (
            ["verify", *patient, "--group-id", "1", "--key", k, "--deployment", str(tmp / "x")],
            "unreadable_file",
            "--deployment",
        ),
        (
            ["device", "send", "--device", str(tmp / "none"), "spo2=97"],
            "unreadable_file",
            "--device",
        ),
        (["device", "send", "--device", k, "spo2=97"], "not_json", "--device"),
        # URLs
        (
            ["consent", "show", *patient, "--provider", ADDRESS, "--rpc-url", "localhost:8545"],
            "invalid_url",
            "--rpc-url",
        ),
        ([*fetch, "--gateway", "ftp://x"], "invalid_url", "--gateway"),
        (["gateway", "run", "--rpc-url", "127.0.0.1"], "invalid_url", "--rpc-url"),
        (
            ["verify", *patient, "--group-id", "1", "--key", k, "--store", "nope"],
            "invalid_url",
            "--store",
        ),
        # vitals and readings
        (
            ["consent", "grant", "--key", k, "--provider", ADDRESS, "--vitals", "hr,pulse2"],
            "unknown_vital",
            "pulse2",
        ),
        (
            ["consent", "grant", "--key", k, "--provider", ADDRESS, "--vitals", ","],
            "no_vitals",
            "--vitals",
        ),
        (["device", "send", "--device", k, "spo2=high"], "bad_reading", "not a number"),
        (["device", "send", "--device", k, "spo2"], "bad_reading", "VITAL=VALUE"),
        # enums and choices
        (
            ["device", "enrol", *patient, "--out", str(tmp / "d.json"), "--kind", "toaster"],
            "invalid_argument",
            "--kind",
        ),
        (["device", "simulate", "--transport", "pigeon"], "invalid_transport", "--transport"),
        # the admin token
        (
            ["device", "enrol", *patient, "--out", str(tmp / "d.json")],
            "admin_token_missing",
            "VITALCHAIN_GATEWAY_ADMIN_TOKEN",
        ),
        (
            ["device", "simulate", "--admin-token-file", str(tmp / "none")],
            "unreadable_file",
            "--admin-token-file",
        ),
    ]


def test_every_bad_argument_is_one_line_with_a_code(key: Path, tmp_path: Path) -> None:
    for args, code, word in cases(key, tmp_path):
        one_line(invoke(*args), code, word)
    assert not list(tmp_path.glob("d.json"))  # nothing written by any of them


def test_a_key_is_never_echoed_in_a_refusal(tmp_path: Path) -> None:
    for content in ("ff" * 32, "00" * 32, "0x" + "ab" * 31, "not a key"):
        path = tmp_path / "bad.key"
        path.write_text(content)
        line = one_line(invoke("key", "address", "--key", str(path)), "not_a_key", "--key")
        assert content not in line


def test_failures_past_the_arguments_carry_a_code_too(key: Path, deployment: Path) -> None:
    one_line(
        invoke("provider", "fetch", "--key", str(key), "--patient", ADDRESS, "--gateway", NOWHERE),
        "unreachable",
        "cannot reach",
        exit_code=1,
    )
    one_line(
        invoke("consent", "show", "--patient", ADDRESS, "--provider", ADDRESS,
               "--deployment", str(deployment), "--rpc-url", NOWHERE),
        "chain_unavailable",
        "cannot use the chain",
        exit_code=1,
    )  # fmt: skip
    one_line(
        invoke("verify", "--patient", ADDRESS, "--group-id", "1", "--key", str(key),
               "--deployment", str(deployment), "--rpc-url", NOWHERE),
        "chain_unavailable",
        NOWHERE,
        exit_code=3,
    )  # fmt: skip


# -- paths (item 21) --------------------------------------------------------------------------------------


def test_key_new_refuses_a_missing_folder_a_directory_and_an_existing_key(tmp_path: Path) -> None:
    one_line(invoke("key", "new", "--out", str(tmp_path / "no" / "k")), "parent_missing", "no")
    assert not (tmp_path / "no").exists()  # the old code made the folder
    one_line(invoke("key", "new", "--out", str(tmp_path)), "is_a_directory")
    existing = tmp_path / "k"
    existing.write_text("keep me")
    one_line(invoke("key", "new", "--out", str(existing)), "file_exists", "never overwritten")
    assert existing.read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("")
    one_line(invoke("key", "new", "--out", str(a_file / "k")), "parent_not_a_directory")


def test_an_unwritable_folder_is_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root every folder is writable to os.access, so the check is driven directly."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(
        "vitalchain.cli._common.os.access",
        lambda p, mode: False if Path(p) == folder and mode & os.W_OK else real(p, mode),
    )
    one_line(invoke("key", "new", "--out", str(folder / "k")), "not_writable", str(folder))
    one_line(invoke("gateway", "run", "--data-dir", str(folder)), "not_writable", str(folder))
    assert not list(folder.iterdir())


def test_fhir_export_checks_its_out_path_before_fetching(key: Path, tmp_path: Path) -> None:
    export = ("fhir", "export", "--key", str(key), "--patient", ADDRESS, "--gateway", NOWHERE)
    one_line(invoke(*export, "--out", str(tmp_path / "no" / "b.json")), "parent_missing")
    assert not (tmp_path / "no").exists()
    one_line(invoke(*export, "--out", str(tmp_path)), "is_a_directory")
    existing = tmp_path / "b.json"
    existing.write_text("{}")
    one_line(invoke(*export, "--out", str(existing)), "file_exists", "--force")
    # with --force the path is accepted, and the fetch is what fails (nothing written)
    one_line(invoke(*export, "--out", str(existing), "--force"), "unreachable", exit_code=1)
    assert existing.read_text() == "{}"


def test_chain_and_device_out_paths(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "x.json")
    one_line(
        invoke("chain", "deploy", "--rpc-url", NOWHERE, "--out", missing,
               "--key", str(tmp_path / "k")),
        "parent_missing", "--out",
    )  # fmt: skip
    one_line(
        invoke("chain", "deploy", "--rpc-url", NOWHERE, "--out", str(tmp_path / "d.json"),
               "--key", missing),
        "parent_missing", "--key",
    )  # fmt: skip
    one_line(
        invoke("chain", "start", "--out", missing, "--key", str(tmp_path / "k")),
        "parent_missing",
        "--out",
    )
    one_line(
        invoke("device", "enrol", "--patient", ADDRESS, "--out", missing, env=TOKEN),
        "parent_missing",
        "--out",
    )
    one_line(
        invoke("device", "enrol", "--patient", ADDRESS, "--out", str(tmp_path), env=TOKEN),
        "is_a_directory",
    )
    a_file = tmp_path / "file"
    a_file.write_text("")
    one_line(invoke("device", "simulate", "--out", str(a_file), env=TOKEN), "not_a_directory")
    one_line(invoke("device", "simulate", "--out", missing, env=TOKEN), "parent_missing")
    assert not (tmp_path / "no").exists()
    assert not (tmp_path / "k").exists()


# -- chain start: a port in TIME_WAIT is free (item 19) ----------------------------------------------


def test_a_port_in_time_wait_counts_as_free(tmp_path: Path) -> None:
    with contextlib.closing(socket.socket()) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as anvil's listener does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server side closes first: its end of the connection sits in TIME_WAIT
        client.close()
    time.sleep(0.1)
    with contextlib.closing(socket.socket()) as plain, pytest.raises(OSError, match="in use"):
        plain.bind(("127.0.0.1", port))  # the control: without SO_REUSEADDR it looks busy
    assert port_free(port)
    # and `chain start` gets past its port check, to the (fake) anvil that exits at once
    fake = tmp_path / "anvil"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    result = invoke("chain", "start", "--port", str(port), "--anvil", str(fake),
                    "--out", str(tmp_path / "d.json"), "--key", str(tmp_path / "k"))  # fmt: skip
    line = one_line(result, "node_failed", "cannot start anvil", exit_code=1)
    assert "in use" not in line


def test_a_listening_port_is_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the default --out (var/gateway/...) would be made
    with contextlib.closing(socket.socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_free(port)
        one_line(
            invoke("chain", "start", "--port", str(port), "--key", str(tmp_path / "k")),
            "port_in_use",
            "in use",
        )
    assert not (tmp_path / "var").exists()  # refused: not even the output's folder is made
