"""Shared test helpers: official vectors live in tests/vectors/ (see PROVENANCE.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vitalchain.services.anvil import run_anvil

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def counter_random() -> Any:
    """Deterministic stand-in for os.urandom, for tests that pin outputs."""
    state = {"n": 0}

    def draw(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            state["n"] += 1
            out += state["n"].to_bytes(32, "big")
        return bytes(out[:n])

    return draw


# --- real services started on a free loopback port ---------------------------------------------


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """A real anvil node (npm's @foundry-rs/anvil) on 127.0.0.1, stopped afterwards."""
    with run_anvil() as url:
        yield url
