"""A device kept in a device file re-keys through the CLI, and the file keeps the new session;
its receipts are collected into a file for `verify-receipts`.

`device send` loads the device file, sends, and saves it again; once the session key has
carried the gateway's per-key limit (small here), the SDK re-keys (docs/spec/onboarding.md,
section 5) and the file must keep the new session ID, key and count, or the next `device send`
would use a key the gateway no longer accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner, Result

from vitalchain.cli import app
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import Ledger
from vitalchain.node import running_gateway, served
from vitalchain.sdk.receipts import read_receipts

ADMIN_TOKEN = "cli-rekey-admin-token-0123456789"


def cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(
        app, list(args), env={"VITALCHAIN_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def test_device_send_rekeys_and_the_device_file_keeps_the_new_session(tmp_path: Path) -> None:
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway",
        admin_token=SecretStr(ADMIN_TOKEN),
        mqtt=False,
        session_message_limit=6,
        rekey_grace_s=1,
    )
    with (
        running_gateway(settings, ledger=Ledger.embedded()) as running,
        served(running.app()) as url,
    ):
        device_file = tmp_path / "oximeter.json"
        patient = PrivateKey.generate().address
        cli(
            "device", "enrol", "--gateway", url, "--patient", patient,
            "--kind", "pulse_oximeter", "--out", str(device_file),
        )  # fmt: skip
        first = json.loads(device_file.read_text())
        for i in range(8):  # more messages than one key may carry
            cli("device", "send", "--device", str(device_file), f"spo2={95 + i % 3}")
        last = json.loads(device_file.read_text())
        assert last["session_id"] != first["session_id"]
        assert last["session_key"] != first["session_key"]
        assert 0 < last["used"]["messages"] < 6
        assert last["next_seq"] == 8
        assert device_file.stat().st_mode & 0o777 == 0o600
        assert running.gateway.store.count_readings() == 8


def test_device_send_collects_its_verified_receipts(tmp_path: Path) -> None:
    """Each `device send --receipts F` adds that send's receipts to F (each once, 0600), so a
    device's receipts reach `verify-receipts`; a file that is not a receipts file is refused
    before anything is sent, and left as it was."""
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway", admin_token=SecretStr(ADMIN_TOKEN), mqtt=False
    )
    with (
        running_gateway(settings, ledger=Ledger.embedded()) as running,
        served(running.app()) as url,
    ):
        device_file, receipts = tmp_path / "cuff.json", tmp_path / "receipts.json"
        cli(
            "device", "enrol", "--gateway", url, "--patient", PrivateKey.generate().address,
            "--kind", "bp_cuff", "--out", str(device_file),
        )  # fmt: skip
        address = json.loads(device_file.read_text())["address"]
        out = cli("device", "send", "--device", str(device_file), "hr=70", "--receipts",
                  str(receipts)).output  # fmt: skip
        assert f"1 receipt(s) in {receipts}" in " ".join(out.split())
        cli("device", "send", "--device", str(device_file), "systolic=120", "diastolic=80",
            "hr=71", "--receipts", str(receipts))  # fmt: skip
        kept = read_receipts(receipts)
        assert receipts.stat().st_mode & 0o777 == 0o600
        assert sorted((r.only.first_seq, r.only.last_seq) for r in kept) == [(0, 0), (1, 2), (3, 3)]
        assert {r.device for r in kept} == {address}
        assert {r.gateway for r in kept} == {running.gateway.master.address}

        bad = tmp_path / "not-receipts.json"
        bad.write_text('{"v": 1, "receipts": ["00"]}')
        refused = cli("device", "send", "--device", str(device_file), "hr=72", "--receipts",
                      str(bad), code=2).output  # fmt: skip
        assert "bad_receipts" in refused
        assert bad.read_text() == '{"v": 1, "receipts": ["00"]}'
        assert running.gateway.store.count_readings() == 4
