"""gateway.db holds every session key: it is 0600 however the gateway is built."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vitalchain.gateway.state import GatewayState


def test_gateway_state_is_private_even_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)  # what a Gateway built outside running_gateway inherits
    try:
        state = GatewayState(tmp_path / "gateway.db")
        state.purge(0)  # a write, so the WAL and its index exist too
        state.close()
    finally:
        os.umask(old)
    made = [p for p in tmp_path.iterdir() if p.name.startswith("gateway.db")]
    assert made
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
