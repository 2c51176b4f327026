"""gateway.db holds every session key: it is 0600 however the gateway is built."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

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


def test_a_failed_activation_leaves_no_transaction_open(tmp_path: Path) -> None:
    """Regression: ``activate`` of a session that is gone (purged meanwhile) raised inside
    BEGIN IMMEDIATE and left the transaction open, so every later write of the gateway failed
    ("cannot start a transaction within a transaction")."""
    state = GatewayState(tmp_path / "gateway.db")
    try:
        with pytest.raises(TypeError):
            state.activate(b"\x00" * 16, 0)
        assert state.purge(0) is not None  # the next write still gets its own transaction
    finally:
        state.close()
