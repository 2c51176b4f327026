"""``vitalchain verify``: check a patient's blocks against the chain (see cli/verify_report.py);
``vitalchain verify-receipts``: check a device's or patient's collected receipts
(sdk/receipts.py), printed and exiting the same way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.ledger import Ledger
    from vitalchain.sdk.receipts import ReceiptReport
    from vitalchain.sdk.verify import Report
    from vitalchain.wire.receipt import Receipt

__all__ = ["read_receipt_files", "run_verify_receipts", "verify", "verify_receipts"]


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


def verify_receipts(
    receipts_files: Annotated[
        list[Path],
        typer.Option(
            "--receipts",
            metavar="FILE",
            help='A collected-receipts file ({"v": 1, "receipts": [...]}); repeat for several.',
        ),
    ],
    patient: Annotated[
        str | None, typer.Option(help="The patient's address (0x…), to check the blocks too.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key", help="File with your hex private key (patient or provider)."),
    ] = None,
    gateway: Annotated[
        str, typer.Option("--gateway", "--store", help="Gateway (store) base URL.")
    ] = "http://127.0.0.1:8700",
    group_id: Annotated[
        int | None,
        typer.Option(
            min=1, max=2**64 - 1, help="The patient's trust group (default: the receipts')."
        ),
    ] = None,
    rpc_url: Annotated[
        str, typer.Option(help="Ethereum JSON-RPC URL of the chain.")
    ] = "http://127.0.0.1:8545",
    deployment: Annotated[Path, typer.Option(help="deployment.json naming the contracts.")] = Path(
        "var/gateway/deployment.json"
    ),
    seal_grace: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds a receipted reading may wait to be sealed before it counts."
        ),
    ] = 3600.0,
) -> None:
    """Verify the gateway's signed receipts against the chain; with --patient and --key, also
    that every receipted reading is in a sealed, anchored block (else receipt_not_sealed).

    Exit codes: 0 verified; 1 a check failed (named in the output); 2 bad arguments;
    3 could not verify (access refused, gateway or chain unreachable).
    """
    import httpx

    from vitalchain.cli._common import (
        BadArgument,
        fail,
        parse_address,
        parse_http_url,
        read_deployment,
        read_key,
    )
    from vitalchain.cli.verify_report import EXIT_UNABLE
    from vitalchain.errors import VitalchainError
    from vitalchain.ledger import Ledger, RpcBackend

    receipts = read_receipt_files(receipts_files)
    if (patient is None) != (key_file is None):
        raise BadArgument("give both --patient and --key, or neither", "--patient",
                          code="missing_argument")  # fmt: skip
    key = read_key(key_file) if key_file is not None else None
    who = parse_address(patient, "--patient") if patient is not None else None
    gateway = parse_http_url(gateway, "--gateway")
    rpc_url = parse_http_url(rpc_url, "--rpc-url")
    plan = read_deployment(deployment)
    if who is not None and group_id is None:
        groups = {r.group_id for r in receipts}
        if len(groups) != 1:
            raise BadArgument("the receipts name several trust groups (or none): give one",
                              "--group-id", code="missing_argument")  # fmt: skip
        group_id = groups.pop()
    try:
        ledger = Ledger(RpcBackend(rpc_url), plan)
    except (OSError, ValueError, VitalchainError) as exc:
        why = exc.code if isinstance(exc, VitalchainError) else "chain_unavailable"
        fail(f"cannot use the chain at {rpc_url}: {exc}", EXIT_UNABLE, why=why)
    if key is None or who is None or group_id is None:
        _, code = run_verify_receipts(ledger, receipts, seal_grace_s=seal_grace)
        raise typer.Exit(code)
    with httpx.Client(base_url=gateway, timeout=30) as http:
        _, code = run_verify_receipts(
            ledger, receipts, http=http, key=key, patient=who, group_id=group_id,
            seal_grace_s=seal_grace,
        )  # fmt: skip
    raise typer.Exit(code)


def read_receipt_files(paths: list[Path]) -> list[Receipt]:
    """Every receipt of the ``--receipts`` files, in order; an unreadable file is
    ``unreadable_file``, one that is not a collected-receipts file ``bad_receipts`` (or
    ``unknown_version``), each exit 2 naming the file."""
    from vitalchain.cli._common import BadArgument, os_refusal
    from vitalchain.errors import DecodeError
    from vitalchain.sdk.receipts import read_receipts

    receipts: list[Receipt] = []
    for path in paths:
        try:
            receipts.extend(read_receipts(path))
        except OSError as exc:
            raise os_refusal(exc, f"cannot read receipts from {path}", "--receipts") from None
        except DecodeError as exc:
            raise BadArgument(f"{path}: {exc.message}", "--receipts", code=exc.code) from None
    return receipts


def run_verify_receipts(
    ledger: Ledger,
    receipts: list[Receipt],
    *,
    http: httpx.Client | None = None,
    key: PrivateKey | None = None,
    patient: str | None = None,
    group_id: int | None = None,
    seal_grace_s: float = 3600.0,
    console: Console | None = None,
) -> tuple[ReceiptReport | None, int]:
    """Check ``receipts`` (and, given the gateway, a key and the patient, the patient's
    blocks), print the table as ``vitalchain verify`` does, and return its exit code."""
    import httpx
    from rich.console import Console
    from web3.exceptions import Web3Exception

    from vitalchain.cli.verify_report import EXIT_FAILED, EXIT_OK, EXIT_UNABLE
    from vitalchain.errors import VitalchainError
    from vitalchain.sdk.provider import AccessError, ProviderClient
    from vitalchain.sdk.receipts import check_receipts

    out = console or Console()
    try:
        if http is not None and key is not None and patient is not None and group_id:
            client = ProviderClient(key, http)
            try:
                blocks = client.fetch(group_id, patient, after_number=0)
            except AccessError as exc:
                out.print(f"[red]cannot fetch the blocks: {exc.message} ({exc.code})")
                return None, EXIT_UNABLE
            report = check_receipts(
                receipts, ledger, blocks=blocks, reader=key, source=client.source,
                patient=patient, grace_s=seal_grace_s,
            )  # fmt: skip
        else:
            report = check_receipts(receipts, ledger, grace_s=seal_grace_s)
    except httpx.HTTPError as exc:
        out.print(f"[red]gateway unreachable: {exc}")
        return None, EXIT_UNABLE
    except (OSError, Web3Exception) as exc:
        out.print(f"[red]chain unreachable: {type(exc).__name__} (chain_unavailable)")
        return None, EXIT_UNABLE
    except VitalchainError as exc:
        out.print(f"[red]could not verify: {exc.message} ({exc.code})")
        return None, EXIT_UNABLE
    _print(out, report)
    summary = (
        f"{report.collected} receipt(s), {report.verified} verified, {report.sealed} sealed, "
        f"{report.anchored} anchored, {report.not_sealed} not sealed"
    )
    if report.ok:
        out.print(f"[green]verified: no check failed ({summary})")
        return report, EXIT_OK
    first = report.failures[0]
    out.print(f"[bold red]FAILED: {first.name} (block {first.block or '-'}): {first.detail}")
    out.print(summary)
    return report, EXIT_FAILED


def _print(out: Console, report: Report) -> None:
    from vitalchain.cli.verify_report import print_report

    title = f"receipts, group {report.group_id or '-'}"
    if report.patient:
        title += f", patient {report.patient}"
    print_report(out, report, title)
