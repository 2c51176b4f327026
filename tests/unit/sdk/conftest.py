"""The embedded chain and a node on it (tests/node_fixtures.py), one chain for this package."""

from __future__ import annotations

from tests.node_fixtures import chain, world

__all__ = ["chain", "world"]
