"""``vitalchain verify``: check a patient's blocks against the chain (see cli/verify_report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["verify"]


def verify(
    patient: Annotated[str, typer.Option(help="The patient's address (0x…).")],
    group_id: Annotated[
        int, typer.Option(min=1, max=2**64 - 1, help="The trust group whose log holds the blocks.")
    ],
    key_file: Annotated[
        Path, typer.Option("--key", help="File with your hex private key (patient or provider).")
    ],
    store: Annotated[str, typer.Option(help="Store (gateway) base URL.")] = "http://127.0.0.1:8700",
    rpc_url: Annotated[
        str, typer.Option(help="Ethereum JSON-RPC URL of the chain.")
    ] = "http://127.0.0.1:8545",
    deployment: Annotated[Path, typer.Option(help="deployment.json naming the contracts.")] = Path(
        "var/gateway/deployment.json"
    ),
    block: Annotated[
        int | None, typer.Option(min=1, max=2**63 - 1, help="Verify only this block number.")
    ] = None,
) -> None:
    """Verify a patient's blocks against the chain: signatures, inclusion, consistency, gaps.

    Exit codes: 0 verified; 1 a check failed (named in the output); 2 bad arguments;
    3 could not verify (access refused, store or chain unreachable).
    """
    import httpx

    from vitalchain.cli._common import (
        fail,
        parse_address,
        parse_http_url,
        read_deployment,
        read_key,
    )
    from vitalchain.cli.verify_report import EXIT_UNABLE, run_verify
    from vitalchain.errors import VitalchainError
    from vitalchain.ledger import Ledger, RpcBackend

    key = read_key(key_file)
    who = parse_address(patient, "--patient")
    store = parse_http_url(store, "--store")
    rpc_url = parse_http_url(rpc_url, "--rpc-url")
    plan = read_deployment(deployment)
    try:
        ledger = Ledger(RpcBackend(rpc_url), plan)
    except (OSError, ValueError, VitalchainError) as exc:
        why = exc.code if isinstance(exc, VitalchainError) else "chain_unavailable"
        fail(f"cannot use the chain at {rpc_url}: {exc}", EXIT_UNABLE, why=why)
    with httpx.Client(base_url=store, timeout=30) as http:
        _, code = run_verify(ledger, http, key, group_id, who, number=block)
    raise typer.Exit(code)
