"""The one-way dependencies of docs/architecture.md, checked on the source rather than trusted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vitalchain"

BASE = {"errors", "vitals", "logs"}
# wire (the byte and JSON formats of docs/spec), services (free ports, supervised local
# processes) and edge (the HTTP error table, its one handler and its one client-side decoder)
# sit on the ground floor beside errors: every layer above may use them.
GROUND = BASE | {"wire", "services", "edge"}
# The server rooms a node wires together; none of them imports another.
SERVERS = {"gateway", "sealing", "access", "alerts"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "logs": set(),
    "vitals": {"errors"},
    "wire": {"errors", "vitals"},
    "services": {"errors", "logs"},
    "edge": {"errors", "logs"},
    "crypto": {"errors", "wire"},
    "ledger": GROUND | {"crypto"},
    "store": GROUND | {"crypto"},
    "fhir": GROUND | {"crypto", "store"},
    "gateway": GROUND | {"crypto", "ledger", "store"},
    # sealing: when blocks seal and roots are anchored, and the threshold policy; it needs no
    # gateway (the node hands it the store and the outbox), and the gateway needs none of it.
    "sealing": GROUND | {"crypto", "ledger", "store"},
    # sdk: what providers and patients run (provider client, alert subscriber, the alert
    # object, verify and its block sources); it imports no server code.  The servers (access,
    # alerts) build on it: the alert object, the refusal types, StoreSource for the proofs.
    "sdk": GROUND | {"crypto", "ledger", "store"},
    "access": GROUND | {"crypto", "ledger", "store", "sdk"},
    "alerts": GROUND | {"crypto", "ledger", "store", "sdk"},
    "device": GROUND | {"crypto", "ledger"},
    # portal: the care portal, a web app on the user's side; it uses what the SDK offers
    # (fetch, decrypt, verify, alerts) and the FHIR export, never server code.
    "portal": GROUND | {"crypto", "ledger", "store", "fhir", "sdk"},
    "node": GROUND | {"crypto", "ledger", "store", "fhir"} | SERVERS | {"sdk", "device"},
    "demo": GROUND
    | {"crypto", "ledger", "store", "fhir"}
    | SERVERS
    | {"sdk", "device", "node", "portal"},
}


def _layer(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level > 1:
            found.add("<relative import across packages>")
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vitalchain" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize(
    "path", sorted(p for p in SRC.rglob("*.py") if _layer(p) in ALLOWED), ids=str
)
def test_imports_point_down_the_layers(path: Path) -> None:
    layer = _layer(path)
    wrong = _imported_layers(path) - ALLOWED[layer] - {layer}
    assert not wrong, f"{path.relative_to(SRC)} ({layer}) imports {sorted(wrong)}"


def test_every_package_has_a_layer() -> None:
    tops = {_layer(p) for p in SRC.rglob("*.py")} - {"__init__", "__main__", "cli", "walkthrough"}
    assert tops <= set(ALLOWED), sorted(tops - set(ALLOWED))
