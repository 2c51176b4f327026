"""The compiled contracts shipped inside the package (built by scripts/export_artifacts.py)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["CONTRACTS", "Artifact", "artifact"]

# Deployment order: later contracts take earlier addresses as constructor arguments.
CONTRACTS = ("TrustGroups", "KeyDirectory", "ConsentRegistry", "AnchorLog", "AlertRegistry")

Artifact = dict[str, Any]


@cache
def artifact(name: str) -> Artifact:
    if name not in CONTRACTS:
        raise KeyError(f"unknown contract {name!r}")
    path = resources.files("vitalchain.ledger") / "artifacts" / f"{name}.json"
    data: Artifact = json.loads(path.read_text())
    return data
