"""The command line, fast: every command's help, and every bad-argument refusal (exit 2).

Nothing here needs a chain or a gateway: refusals happen before anything is contacted, and the
"unreachable" cases point at 127.0.0.1:9, where nothing listens.  The end-to-end run on a real
anvil node and a real gateway is tests/integration/test_cli_anvil.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import Result

from tests.support.cli import NOWHERE, exited, invoke, text
from vitalchain.cli import app
from vitalchain.crypto import PrivateKey
from vitalchain.services.ports import free_port

ADDRESS = "0x" + "11" * 20

# Every command and group, with words its --help must contain (what it is for).
PURPOSES: dict[tuple[str, ...], list[str]] = {
    (): ["remote patient monitoring"],
    ("chain",): ["development chain", "deploy"],
    ("chain", "start"): ["anvil", "Ctrl-C", "127.0.0.1"],
    ("chain", "deploy"): ["Deploy", "deployment.json", "consent admin"],
    ("gateway",): ["gateway"],
    ("gateway", "run"): ["API Edge", "onboarding"],
    ("device",): ["Enrol", "simulate"],
    ("device", "enrol"): ["Enrol", "device file", "pairing code"],
    ("device", "send"): ["signed, encrypted", "VITAL=VALUE"],
    ("device", "simulate"): ["Simulate", "--device"],
    ("key",): ["key file", "publish"],
    ("key", "new"): ["Generate", "0600", "address"],
    ("key", "address"): ["address"],
    ("key", "publish"): ["key directory"],
    ("consent",): ["grants", "revokes"],
    ("consent", "grant"): ["Grant", "days", "hr"],
    ("consent", "revoke"): ["Revoke", "refuses"],
    ("consent", "show"): ["consent"],
    ("provider",): ["Register", "fetch"],
    ("provider", "register"): ["Register", "consent admin"],
    ("provider", "fetch"): ["decrypt", "consent", "--json"],
    ("fhir",): ["FHIR R4"],
    ("fhir", "export"): ["FHIR R4 Bundle", "Observations"],
    ("alerts",): ["alerts"],
    ("alerts", "watch"): ["WebSocket", "latency", "--count"],
    ("alerts", "list"): ["missed", "since", "receipt"],
    ("alerts", "ack"): ["Acknowledge", "escalation"],
    ("alerts", "snooze"): ["Silence", "high-priority"],
    ("verify",): ["Verify", "Exit codes"],
    ("verify-receipts",): ["receipts", "receipt_not_sealed", "Exit codes"],
    ("walkthrough",): ["cryptography"],
    ("demo",): ["demo", "--serve"],
    ("portal",): ["care portal", "login link", "Ctrl-C"],
}


def refused(result: Result, *words: str) -> None:
    """Exit 2 (a usage error), the given words in the message, and no traceback."""
    exited(result, 2, *words)


def failed(result: Result, *words: str) -> None:
    """Exit 1 (the operation failed), with a one-line reason and no traceback."""
    exited(result, 1, *words)


def tree() -> set[tuple[str, ...]]:
    def walk(command: Any, path: tuple[str, ...]) -> set[tuple[str, ...]]:
        found = {path}
        if hasattr(command, "commands"):  # a group (Typer vendors its own click)
            for name, sub in command.commands.items():
                if not sub.hidden:
                    found |= walk(sub, (*path, name))
        return found

    return walk(typer.main.get_command(app), ())


def test_every_command_is_listed_here() -> None:
    assert tree() == set(PURPOSES)


@pytest.mark.parametrize("path", sorted(PURPOSES), ids=lambda p: " ".join(p) or "vitalchain")
def test_help_says_what_each_command_is_for(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    out = text(result)
    for word in PURPOSES[path]:
        assert word in out, (word, out)


def test_groups_without_a_command_show_their_help() -> None:
    for group in ("chain", "device", "key", "consent", "provider", "fhir", "alerts", "gateway"):
        result = invoke(group)
        assert "Usage" in result.output
        assert "Commands" in result.output


def test_simulate_alias_still_works() -> None:
    """`vitalchain simulate` predates `device simulate`; it stays, hidden from the listing."""
    assert invoke("simulate", "--help").exit_code == 0
    assert not re.search(r"│ simulate\s", invoke("--help").output)


# -- keys ------------------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "me.key"
    key = PrivateKey.generate()
    path.write_text(key.secret.hex() + "\n")
    return path


def test_key_new_writes_0600_prints_the_address_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    result = invoke("key", "new", "--out", str(path))
    assert result.exit_code == 0, result.output
    key = PrivateKey(bytes.fromhex(path.read_text().strip()))
    assert path.stat().st_mode & 0o777 == 0o600
    assert result.stdout.strip() == key.address
    assert key.secret.hex() not in result.output
    refused(invoke("key", "new", "--out", str(path)), "--out", "never overwritten")
    assert path.read_text().strip() == key.secret.hex()  # unchanged


def test_key_address_shows_the_address_only(key_file: Path) -> None:
    result = invoke("key", "address", "--key", str(key_file))
    secret = key_file.read_text().strip()
    assert result.exit_code == 0
    assert result.stdout.strip() == PrivateKey(bytes.fromhex(secret)).address
    assert secret not in result.output


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read a private key"),  # missing file
        ("not hex at all", "does not hold a private key"),
        ("00" * 32, "does not hold a private key"),  # zero is no key
        ("ff" * 32, "does not hold a private key"),  # above the curve order
        ("abcd", "does not hold a private key"),
    ],
)
def test_unreadable_key_files_are_refused_without_echoing_them(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    result = invoke("key", "address", "--key", str(path))
    refused(result, "--key", why)
    if content:
        assert content not in result.output


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    refused(invoke("key", "address", "--key", str(tmp_path)), "--key", "cannot read")


# -- consent, provider, key publish: argument checks before any chain is contacted ------------------


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    names = ("TrustGroups", "KeyDirectory", "ConsentRegistry", "AnchorLog", "AlertRegistry")
    path.write_text(
        json.dumps(
            {"chain_id": 31337, "block": 1, "addresses": {n: "0x" + "22" * 20 for n in names}}
        )
    )
    return path


def grant(key_file: Path, *extra: str, provider: str = ADDRESS, vitals: str = "hr,spo2") -> Result:
    return invoke(
        "consent", "grant", "--key", str(key_file), "--provider", provider, "--vitals", vitals,
        *extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "why"),
    [
        ("0xnope", "not an address"),
        ("11" * 20, "not an address"),  # no 0x
        ("0x" + "11" * 19, "not an address"),  # 19 bytes
        ("0x" + "11" * 21, "not an address"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "checksum"),  # EIP-55 typo (last d→D)
    ],
)
def test_malformed_addresses_are_refused(key_file: Path, provider: str, why: str) -> None:
    refused(grant(key_file, provider=provider), "--provider", why)


def test_addresses_in_one_case_are_accepted_and_checked_later(
    key_file: Path, deployment: Path
) -> None:
    lower = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
    result = grant(key_file, "--deployment", str(deployment), "--rpc-url", NOWHERE, provider=lower)
    failed(result, "cannot use the chain")  # got past the address, to the (absent) chain


@pytest.mark.parametrize(
    ("vitals", "why"),
    [
        ("hr,heartbeat", "unknown vital 'heartbeat'"),
        ("", "name at least one vital"),
        (",", "name at least one vital"),
        ("spo2;hr", "unknown vital"),
    ],
)
def test_bad_vital_names_are_refused(key_file: Path, vitals: str, why: str) -> None:
    refused(grant(key_file, vitals=vitals), "--vitals", why)


def test_vital_aliases_and_all_are_understood() -> None:
    from vitalchain.cli._common import parse_scope
    from vitalchain.vitals import ALL_VITALS_SCOPE, Vital

    assert parse_scope("hr, spo2") == Vital.HEART_RATE.bit | Vital.SPO2.bit
    assert parse_scope("bp") == Vital.SYSTOLIC_BP.bit | Vital.DIASTOLIC_BP.bit
    assert parse_scope("Heart-Rate,temp") == Vital.HEART_RATE.bit | Vital.BODY_TEMPERATURE.bit
    assert parse_scope("all") == ALL_VITALS_SCOPE


@pytest.mark.parametrize("days", ["-1", "0", "3651", "two"])
def test_bad_day_counts_are_refused(key_file: Path, days: str) -> None:
    refused(grant(key_file, "--days", days), "--days")


def test_deployment_file_problems_are_argument_errors(key_file: Path, tmp_path: Path) -> None:
    refused(
        grant(key_file, "--deployment", str(tmp_path / "none.json")),
        "--deployment",
        "chain deploy",
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"chain_id": 1}')
    refused(grant(key_file, "--deployment", str(bad)), "--deployment", "not a vitalchain")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8545", "http://", "nonsense"])
def test_malformed_urls_are_refused(key_file: Path, deployment: Path, url: str) -> None:
    refused(grant(key_file, "--deployment", str(deployment), "--rpc-url", url), "--rpc-url")
    refused(
        invoke("provider", "fetch", "--key", str(key_file), "--patient", ADDRESS,
               "--gateway", url),
        "--gateway",
    )  # fmt: skip


def test_an_unreachable_chain_is_a_clear_failure(key_file: Path, deployment: Path) -> None:
    common = ("--deployment", str(deployment), "--rpc-url", NOWHERE)
    failed(grant(key_file, *common), "cannot use the chain", NOWHERE)
    failed(
        invoke("consent", "revoke", "--key", str(key_file), "--provider", ADDRESS, *common),
        "cannot use the chain",
    )
    failed(
        invoke("consent", "show", "--patient", ADDRESS, "--provider", ADDRESS, *common),
        "cannot use the chain",
    )
    failed(invoke("key", "publish", "--key", str(key_file), *common), "cannot use the chain")
    failed(
        invoke("provider", "register", "--admin-key", str(key_file), "--provider", ADDRESS,
               *common),
        "cannot use the chain",
    )  # fmt: skip


def test_consent_revoke_and_show_check_their_addresses(key_file: Path) -> None:
    refused(invoke("consent", "revoke", "--key", str(key_file), "--provider", "0x12"), "--provider")
    refused(invoke("consent", "show", "--patient", "bob", "--provider", ADDRESS), "--patient")


def test_provider_register_needs_a_readable_admin_key(tmp_path: Path) -> None:
    refused(
        invoke("provider", "register", "--admin-key", str(tmp_path / "missing"),
               "--provider", ADDRESS),
        "--admin-key", "cannot read",
    )  # fmt: skip


# -- provider fetch, fhir export, alerts watch ------------------------------------------------------


def test_fetch_and_export_check_arguments_then_fail_clearly(key_file: Path) -> None:
    refused(
        invoke("provider", "fetch", "--key", str(key_file), "--patient", "patient-7"),
        "--patient",
    )
    refused(
        invoke("provider", "fetch", "--key", str(key_file), "--patient", ADDRESS,
               "--group-id", "0"),
        "--group-id",
    )  # fmt: skip
    refused(invoke("fhir", "export", "--key", str(key_file), "--patient", ADDRESS), "--out")
    failed(
        invoke("provider", "fetch", "--key", str(key_file), "--patient", ADDRESS,
               "--gateway", NOWHERE),
        "cannot reach the gateway",
    )  # fmt: skip
    failed(
        invoke("fhir", "export", "--key", str(key_file), "--patient", ADDRESS,
               "--gateway", NOWHERE, "--group-id", "1", "--out", "-"),
        "cannot fetch", "cannot reach",
    )  # fmt: skip


def test_alerts_watch_checks_arguments_then_fails_clearly(key_file: Path) -> None:
    refused(invoke("alerts", "watch", "--key", "/nonexistent/key"), "--key")
    refused(invoke("alerts", "watch", "--key", str(key_file), "--count", "0"), "--count")
    refused(invoke("alerts", "watch", "--key", str(key_file), "--timeout", "-1"), "--timeout")
    refused(invoke("alerts", "watch", "--key", str(key_file), "--gateway", "ws://x"), "--gateway")
    failed(
        invoke("alerts", "watch", "--key", str(key_file), "--gateway", NOWHERE, "--count", "1"),
        "cannot subscribe",
    )


def test_ws_url_follows_the_gateway_scheme() -> None:
    from vitalchain.cli.alerts import ws_url

    assert ws_url("http://127.0.0.1:8700/") == "ws://127.0.0.1:8700/v1/alerts/ws"
    assert ws_url("https://gw.example") == "wss://gw.example/v1/alerts/ws"


# -- devices -------------------------------------------------------------------------------------


TOKEN = {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": "a-client-side-token"}


def test_device_enrol_refusals(tmp_path: Path) -> None:
    out = tmp_path / "dev.json"
    base = ("device", "enrol", "--out", str(out))
    refused(invoke(*base, "--patient", "0x1", env=TOKEN), "--patient")
    refused(invoke(*base, "--patient", ADDRESS), "--admin-token-file", "admin token")
    refused(invoke(*base, "--patient", ADDRESS, "--kind", "toaster", env=TOKEN), "--kind")
    refused(invoke(*base, "--patient", ADDRESS, "--gateway", "gw", env=TOKEN), "--gateway")
    failed(
        invoke(*base, "--patient", ADDRESS, "--gateway", NOWHERE, env=TOKEN),
        "enrolment through",
        "failed",
    )
    assert not out.exists()  # nothing half-written
    out.write_text("{}")
    refused(invoke(*base, "--patient", ADDRESS, env=TOKEN), "--out", "never")


def test_admin_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    enrol = ("device", "enrol", "--out", str(tmp_path / "d.json"), "--patient", ADDRESS,
             "--gateway", NOWHERE)  # fmt: skip
    failed(invoke(*enrol, env=TOKEN), "failed")  # past the token check, to the gateway
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456789\n")
    failed(invoke(*enrol, "--admin-token-file", str(token_file)), "failed")


def test_the_admin_token_flag_is_refused_and_not_echoed(tmp_path: Path) -> None:
    """A token on the command line is in every local user's process list: refused with the
    way to give it instead, by every command that took it."""
    secret = "visible-to-everyone-0123456789"
    for command in (
        ("gateway", "run"),
        ("device", "enrol", "--out", str(tmp_path / "d.json"), "--patient", ADDRESS),
        ("device", "simulate"),
    ):
        result = invoke(*command, "--admin-token", secret)
        refused(result, "--admin-token", "VITALCHAIN_GATEWAY_ADMIN_TOKEN", "--admin-token-file")
        assert "(admin_token_on_command_line)" in result.output
        assert secret not in result.output


@pytest.mark.parametrize(
    ("reading", "why"),
    [
        ("spo2", "VITAL=VALUE"),
        ("xx=1", "unknown vital"),
        ("spo2=abc", "not a number"),
        ("spo2=nan", "not a number"),
        ("bp=120", "names 2 vitals"),
    ],
)
def test_device_send_refuses_bad_readings(tmp_path: Path, reading: str, why: str) -> None:
    refused(
        invoke("device", "send", "--device", str(tmp_path / "d.json"), reading),
        "READINGS",
        why,
    )


def test_device_files_are_checked(tmp_path: Path, key_file: Path) -> None:
    missing = tmp_path / "missing.json"
    refused(invoke("device", "send", "--device", str(missing), "spo2=97"), "--device")
    refused(invoke("device", "simulate", "--device", str(missing)), "--device")
    refused(invoke("device", "send", "--device", str(key_file), "spo2=97"), "--device", "JSON")
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps({"v": 1, "type": "vitalchain-device", "key": "00"}))
    refused(invoke("device", "send", "--device", str(fake), "spo2=97"), "--device", "not a")


def test_device_simulate_refusals(tmp_path: Path) -> None:
    refused(invoke("device", "simulate", "--transport", "pigeon", env=TOKEN), "http")
    refused(invoke("device", "simulate"), "admin token")
    refused(invoke("device", "simulate", "--patients", "0", env=TOKEN), "--patients")
    refused(invoke("device", "simulate", "--speedup", "0.5", env=TOKEN), "--speedup")
    failed(
        invoke("device", "simulate", "--gateway", NOWHERE, "--out", str(tmp_path), env=TOKEN),
        "onboarding failed",
    )


# -- chain ---------------------------------------------------------------------------------------


def test_chain_deploy_refusals(tmp_path: Path, deployment: Path) -> None:
    key = tmp_path / "deployer.key"
    refused(
        invoke("chain", "deploy", "--out", str(deployment), "--key", str(key)), "--out", "--force"
    )
    refused(
        invoke("chain", "deploy", "--rpc-url", "localhost", "--out", str(tmp_path / "d.json")),
        "--rpc-url",
    )
    bad = tmp_path / "bad.key"
    bad.write_text("0x1234")
    refused(
        invoke("chain", "deploy", "--out", str(tmp_path / "d.json"), "--key", str(bad),
               "--rpc-url", NOWHERE),
        "--key",
    )  # fmt: skip
    result = invoke(
        "chain", "deploy", "--out", str(tmp_path / "d.json"), "--key", str(key),
        "--rpc-url", NOWHERE,
    )  # fmt: skip
    failed(result, "cannot deploy", NOWHERE)
    assert key.stat().st_mode & 0o777 == 0o600  # generated on first use, kept for the retry
    assert not (tmp_path / "d.json").exists()


def test_chain_start_refusals(tmp_path: Path) -> None:
    refused(invoke("chain", "start", "--anvil", str(tmp_path / "no-anvil")), "--anvil")
    refused(invoke("chain", "start", "--port", "0"), "--port")
    port = free_port()
    with contextlib.closing(socket.socket()) as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        refused(
            invoke("chain", "start", "--port", str(port), "--key", str(tmp_path / "k")),
            "--port",
            "in use",
        )


# -- walkthrough, demo registration -------------------------------------------------------------------


def test_walkthrough_runs_the_crypto_trace() -> None:
    result = invoke("walkthrough")
    assert result.exit_code == 0, result.output
    assert re.search(r"inclusion proof for block \d+", result.output)


def test_demo_is_the_lead_s_command() -> None:
    from vitalchain.demo.command import demo

    def plain(words: str) -> str:
        return re.sub(r"[`*_]", "", " ".join(words.split()))

    summary = plain((demo.__doc__ or "").strip().split("\n\n")[0])
    assert summary in plain(text(invoke("demo", "--help")))


@pytest.fixture
def not_a_gateway() -> Iterator[str]:
    """Some other web server on 127.0.0.1: it answers, but not like a gateway."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_that_is_no_gateway_is_a_clear_failure(key_file: Path, not_a_gateway: str) -> None:
    fetch = ("provider", "fetch", "--key", str(key_file), "--patient", ADDRESS)
    failed(invoke(*fetch, "--gateway", not_a_gateway), "does not answer like a vitalchain gateway")
    failed(invoke(*fetch, "--gateway", not_a_gateway, "--group-id", "1"), "the answer is not JSON")
