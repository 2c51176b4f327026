"""A device kept in a device file re-keys through the CLI, and the file keeps the new session.

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

ADMIN_TOKEN = "cli-rekey-admin-token-0123456789"


def cli(*args: str) -> Result:
    result = CliRunner().invoke(
        app, list(args), env={"VITALCHAIN_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert result.exit_code == 0, result.output
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
