"""Every context string, AAD string and MQTT topic has one owner: ``vitalchain.wire``.

A ``vitalchain/v1…`` literal (bytes or str, f-string parts included) anywhere else in src/ or
tests/ is a second copy that can drift from the spec; import the wire constant instead.
Docstrings may quote them.  The exceptions below are named one by one, each with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRE = ROOT / "src" / "vitalchain" / "wire"
PREFIX = "vitalchain/v1"

# (file relative to the repository, literal) -> why it may stay where it is
ALLOWED: dict[tuple[str, str], str] = {
    (
        "src/vitalchain/crypto/primitives/aead.py",
        "vitalchain/v1 speck128-256-ctr hmac-sha256 keys",
    ): ("HKDF label of the SPECK suite: an algorithm constant of aead.md, not a message context"),
    ("src/vitalchain/crypto/ring.py", "vitalchain/v1 blsag challenge"): (
        "bLSAG hash-domain tag of ring-signature.md, internal to the algorithm"
    ),
    ("src/vitalchain/crypto/ring.py", "vitalchain/v1 blsag nonce"): (
        "bLSAG hash-domain tag of ring-signature.md, internal to the algorithm"
    ),
    ("src/vitalchain/crypto/envelope.py", "vitalchain/v1 envelope wrap"): (
        "HKDF label of envelope.md's key wrap, internal to the algorithm"
    ),
    ("src/vitalchain/crypto/envelope.py", "vitalchain/v1 envelope key commitment"): (
        "HMAC label of envelope.md's key commitment, internal to the algorithm"
    ),
    ("src/vitalchain/crypto/envelope.py", "vitalchain/v1 envelope ephemeral"): (
        "HMAC label of envelope.md's hedged ephemeral key, internal to the algorithm"
    ),
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in skip:
            value = node.value
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if isinstance(text, str) and PREFIX in text:
                out.append((node.lineno, text))
    return out


def _files() -> list[Path]:
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    vectors = ROOT / "tests" / "vectors"
    return sorted(
        p
        for p in files
        if not p.is_relative_to(WIRE) and not p.is_relative_to(vectors) and p != Path(__file__)
    )


def test_no_context_aad_or_topic_literal_outside_wire() -> None:
    found = []
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        for line, text in _literals(path):
            if (rel, text) not in ALLOWED:
                found.append(f"{rel}:{line}: {text!r}")
    assert not found, "import these from vitalchain.wire:\n" + "\n".join(sorted(found))


def test_every_exception_is_still_needed() -> None:
    """An exception whose literal has gone (moved to wire, renamed) must leave the list."""
    present = {
        (path.relative_to(ROOT).as_posix(), text)
        for path in _files()
        for _, text in _literals(path)
    }
    assert set(ALLOWED) <= present, sorted(set(ALLOWED) - present)
