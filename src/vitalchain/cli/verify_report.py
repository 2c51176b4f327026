"""``vitalchain verify``: fetch with one's own key, check against the chain, report by name."""

from __future__ import annotations

import httpx
from rich.console import Console
from rich.table import Table

from vitalchain.crypto.keys import PrivateKey
from vitalchain.ledger import Ledger
from vitalchain.sdk.provider import AccessError, ProviderClient
from vitalchain.sdk.verify import Outcome, Report, verify_patient

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNABLE", "run_verify"]

EXIT_OK = 0  # every check passed (pending anchors are not failures)
EXIT_FAILED = 1  # at least one check failed: something was tampered with or is missing
EXIT_UNABLE = 3  # could not verify: access refused, store or chain unreachable
_STYLE = {
    Outcome.OK: "green",
    Outcome.FAILED: "bold red",
    Outcome.PENDING: "yellow",
    Outcome.SKIPPED: "dim",
}


def run_verify(
    ledger: Ledger,
    http: httpx.Client,
    key: PrivateKey,
    group_id: int,
    patient: str,
    *,
    number: int | None = None,
    console: Console | None = None,
) -> tuple[Report | None, int]:
    out = console or Console()
    client = ProviderClient(key, http)
    try:
        client.fetch(group_id, patient, after_number=0)
    except AccessError as exc:
        out.print(f"[red]cannot fetch the blocks: {exc.message} ({exc.code})")
        return None, EXIT_UNABLE
    except httpx.HTTPError as exc:
        out.print(f"[red]store unreachable: {exc}")
        return None, EXIT_UNABLE
    report = verify_patient(
        client.source, ledger, group_id, patient, number=number, reader=key, opened=client.opened
    )
    print_report(out, report, f"patient {patient}, group {group_id}")
    if report.ok:
        out.print("[green]verified: no check failed")
        return report, EXIT_OK
    first = report.failures[0]
    out.print(f"[bold red]FAILED: {first.name} (block {first.block or '-'}): {first.detail}")
    return report, EXIT_FAILED


def print_report(out: Console, report: Report, title: str) -> None:
    """The table of ``vitalchain verify`` and ``verify-receipts``: block, check, result,
    detail, one row per check."""
    table = Table("block", "check", "result", "detail", title=title)
    for check in report.checks:
        style = _STYLE[check.outcome]
        table.add_row(
            str(check.block or "-"), check.name, f"[{style}]{check.outcome}", check.detail
        )
    out.print(table)
