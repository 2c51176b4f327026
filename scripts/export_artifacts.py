#!/usr/bin/env python3
"""Build the Solidity contracts with forge and ship their ABIs and bytecode to the Python package.

    python scripts/export_artifacts.py          # build, write src/vitalchain/ledger/artifacts/
    python scripts/export_artifacts.py --check  # rebuild in a temp dir; fail on any difference

Output, one file per deployable contract of ``contracts/src/*.sol`` (named like its file):

    <ContractName>.json  {"contractName", "abi", "bytecode", "deployedBytecode"}   (hex with 0x)
    manifest.json        compiler version and settings, toolchain versions, the sha256 of every
                         contract file and of every source that went into the build

Builds are reproducible: ``contracts/foundry.toml`` turns off the CBOR metadata and its hash, so the
bytecode depends only on the sources and the settings, never on paths or timestamps. The output is
deterministic (sorted keys, two-space indent, trailing newline), so ``--check`` compares files
byte for byte. ``deployedBytecode`` is the compiler's runtime code: immutables (the EIP-712 domain
cache of TrustGroups, the TrustGroups / ConsentRegistry addresses) are zero-filled there and only
set at deployment, so compare it with on-chain code only outside those positions.

Standard library only. Needs the npm toolchain (``npm ci`` at the repository root): forge is
``node_modules/.bin/forge`` unless the FORGE environment variable names another binary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
SOURCES = CONTRACTS / "src"
ARTIFACTS = ROOT / "src" / "vitalchain" / "ledger" / "artifacts"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "vitalchain-contract-artifacts/1"


class ExportError(Exception):
    """A build or consistency failure, reported as one line on stderr."""


def _forge() -> str:
    forge = os.environ.get("FORGE") or str(ROOT / "node_modules" / ".bin" / "forge")
    if os.sep in forge and not Path(forge).exists():
        raise ExportError(f"forge not found at {forge}; run `npm ci` at the repository root")
    return forge


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rel(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


def _package_version(name: str) -> str:
    manifest = ROOT / "node_modules" / name / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def build(out_dir: Path, cache_dir: Path) -> None:
    """Compile contracts/src (tests and scripts skipped) into out_dir with forge."""
    cmd = [
        _forge(),
        "build",
        "--root",
        str(CONTRACTS),
        "--out",
        str(out_dir),
        "--cache-path",
        str(cache_dir),
        "--skip",
        "test",
        "--skip",
        "script",
        "--offline",
    ]
    # The command is fixed; only the forge path may come from the FORGE environment variable.
    result = subprocess.run(cmd, cwd=CONTRACTS, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise ExportError(f"forge build failed (exit {result.returncode})")


def deployable_contracts() -> list[str]:
    """Contracts named like their file in contracts/src/ (interfaces live in src/interfaces/)."""
    return sorted(p.stem for p in SOURCES.glob("*.sol"))


def _hex(value: str, what: str) -> str:
    if not value.startswith("0x"):
        value = "0x" + value
    if "__$" in value:
        raise ExportError(f"{what} has unlinked library placeholders")
    return value


def collect(out_dir: Path) -> dict[str, str]:
    """Render every shipped file (name -> exact text) from a forge output directory."""
    files: dict[str, str] = {}
    compiler: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    sources: dict[str, str] = {}
    contracts: dict[str, Any] = {}

    for name in deployable_contracts():
        path = out_dir / f"{name}.sol" / f"{name}.json"
        try:
            forge_artifact = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"no forge artifact for {name} at {path}: {exc}") from exc
        bytecode = _hex(forge_artifact["bytecode"]["object"], f"{name} bytecode")
        if bytecode == "0x":
            continue  # abstract contract: nothing to deploy
        artifact = {
            "contractName": name,
            "abi": forge_artifact["abi"],
            "bytecode": bytecode,
            "deployedBytecode": _hex(
                forge_artifact["deployedBytecode"]["object"], f"{name} deployedBytecode"
            ),
        }
        files[f"{name}.json"] = _dumps(artifact)

        metadata = forge_artifact["metadata"]
        these_settings = {k: v for k, v in metadata["settings"].items() if k != "compilationTarget"}
        if compiler is None:
            compiler, settings = metadata["compiler"], these_settings
        elif (compiler, settings) != (metadata["compiler"], these_settings):
            raise ExportError(f"{name} was compiled with other settings than the rest")
        for source in metadata["sources"]:
            source_path = (CONTRACTS / source).resolve()
            sources[_rel(source_path)] = _sha256(source_path)
        contracts[name] = {
            "artifact": f"{name}.json",
            "bytecodeSha256": hashlib.sha256(bytes.fromhex(bytecode[2:])).hexdigest(),
            "source": _rel(SOURCES / f"{name}.sol"),
        }

    if not contracts or compiler is None or settings is None:
        raise ExportError(f"no deployable contract found in {_rel(SOURCES)}")
    manifest = {
        "format": MANIFEST_FORMAT,
        "generatedBy": "scripts/export_artifacts.py (make contracts-artifacts); do not edit",
        "compiler": {
            "version": compiler["version"],
            "distribution": f"npm solc {_package_version('solc')} (solcjs) via scripts/solc-shim",
        },
        "settings": settings,
        "evmVersion": settings.get("evmVersion"),
        "optimizer": settings.get("optimizer"),
        "toolchain": {
            "@foundry-rs/forge": _package_version("@foundry-rs/forge"),
            "@openzeppelin/contracts": _package_version("@openzeppelin/contracts"),
            "solc": _package_version("solc"),
        },
        "contracts": contracts,
        "sources": dict(sorted(sources.items())),
        "foundryToml": _sha256(CONTRACTS / "foundry.toml"),
    }
    files[MANIFEST] = _dumps(manifest)
    return files


def export() -> int:
    # A private build directory: exporting into contracts/out with `--skip test` would leave a
    # cache that makes the next `forge test` skip changed test suites.
    with tempfile.TemporaryDirectory(prefix="vitalchain-artifacts-") as tmp:
        build(Path(tmp) / "out", Path(tmp) / "cache")
        files = collect(Path(tmp) / "out")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stale = {p.name for p in ARTIFACTS.glob("*.json")} - set(files)
    for name in sorted(stale):
        (ARTIFACTS / name).unlink()
    for name, text in sorted(files.items()):
        target = ARTIFACTS / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    print(f"exported {len(files) - 1} contract artifacts and {MANIFEST} to {_rel(ARTIFACTS)}")
    return 0


def _differences(name: str, shipped_text: str, fresh_text: str) -> list[str]:
    try:
        shipped = json.loads(shipped_text)
    except ValueError:
        return [f"{name}: not valid JSON"]
    fresh = json.loads(fresh_text)
    keys = sorted(set(shipped) | set(fresh))
    fields = [k for k in keys if shipped.get(k) != fresh.get(k)]
    if fields:
        return [f"{name}: differs from a fresh build in {', '.join(fields)}"]
    return [f"{name}: same content, different formatting"]


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="vitalchain-artifacts-") as tmp:
        build(Path(tmp) / "out", Path(tmp) / "cache")
        files = collect(Path(tmp) / "out")
    problems: list[str] = []
    shipped_names = {p.name for p in ARTIFACTS.glob("*.json")} if ARTIFACTS.is_dir() else set()
    for name in sorted(shipped_names - set(files)):
        problems.append(f"{name}: shipped but not produced by the build")
    for name, text in sorted(files.items()):
        target = ARTIFACTS / name
        if not target.exists():
            problems.append(f"{name}: missing")
        elif target.read_text(encoding="utf-8") != text:
            problems.extend(_differences(name, target.read_text(encoding="utf-8"), text))
    if problems:
        sys.stderr.write(
            f"shipped contract artifacts in {_rel(ARTIFACTS)} are out of date:\n"
            + "".join(f"  - {p}\n" for p in problems)
            + "run `make contracts-artifacts` and commit the result\n"
        )
        return 1
    print(f"{len(files) - 1} contract artifacts and {MANIFEST} match a fresh build")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild into a temporary directory and fail if any shipped artifact differs",
    )
    args = parser.parse_args(argv)
    try:
        return check() if args.check else export()
    except ExportError as exc:
        sys.stderr.write(f"export_artifacts: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
