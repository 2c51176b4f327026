"""``vitalchain consent``: the patient grants, revokes and inspects consent on chain."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from vitalchain.cli._common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_RPC,
    VITAL_NAMES,
    DeploymentOpt,
    PatientOpt,
    RpcOpt,
    command_group,
    ensure_gas,
    guard,
    open_chain,
    parse_address,
    parse_scope,
    read_key,
    scope_names,
    stdout,
)

__all__ = ["consent_app"]

consent_app = command_group(
    "A patient grants, revokes or inspects a provider's consent (on chain)."
)

PatientKeyOpt = Annotated[
    Path, typer.Option("--key", help="The patient's key file (the patient signs).")
]
ProviderOpt = Annotated[str, typer.Option("--provider", help="The provider's address (0x…).")]
DAY_S = 86400


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


@consent_app.command("grant")
def grant(
    key: PatientKeyOpt,
    provider: ProviderOpt,
    vitals: Annotated[
        str,
        typer.Option(help=f"Comma-separated vitals the provider may read: {VITAL_NAMES}."),
    ],
    days: Annotated[
        int, typer.Option(min=1, max=3650, help="Days the consent lasts (chain time).")
    ] = 30,
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
) -> None:
    """Grant a registered provider access to some of your vitals for N days.

    Blocks sealed from now on are wrapped for the provider too.  Your own public key is
    published first if it is not yet (so blocks are wrapped for you as well).
    """
    patient = read_key(key)
    who = parse_address(provider, "--provider")
    scope = parse_scope(vitals)
    ledger = open_chain(rpc_url, deployment)
    console = stdout()
    with guard("the consent was not granted"):
        ensure_gas(ledger, patient.address)
        if not ledger.has_key(patient.address):
            ledger.publish_key(patient)
            console.print(f"published your public key ({patient.address})")
        expires_at = ledger.timestamp() + days * DAY_S
        tx = ledger.grant(patient, who, scope, expires_at)
        published = ledger.has_key(who)
    console.print(
        f"[green]granted[/green] {who} access to {scope_names(scope)} of patient "
        f"{patient.address} until {_when(expires_at)} (block {tx.block_number})",
    )
    if not published:
        console.print(
            f"[yellow]note:[/yellow] {who} has published no key yet, so blocks cannot be wrapped "
            "for it until it runs `vitalchain key publish`",
        )


@consent_app.command("revoke")
def revoke(
    key: PatientKeyOpt,
    provider: ProviderOpt,
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
) -> None:
    """Revoke a provider's consent from now on.

    The store refuses the provider's next request, and later blocks are not wrapped for it;
    what it already fetched cannot be taken back.
    """
    patient = read_key(key)
    who = parse_address(provider, "--provider")
    ledger = open_chain(rpc_url, deployment)
    with guard("the consent was not revoked"):
        ensure_gas(ledger, patient.address)
        tx = ledger.revoke(patient, who)
    stdout().print(
        f"[green]revoked[/green] the consent of {who} (block {tx.block_number})",
    )


@consent_app.command("show")
def show(
    patient: PatientOpt,
    provider: ProviderOpt,
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
) -> None:
    """Show the consent a patient gave a provider, as the chain holds it."""
    who = parse_address(provider, "--provider")
    whose = parse_address(patient, "--patient")
    ledger = open_chain(rpc_url, deployment)
    with guard("cannot read the consent"):
        consent = ledger.consent_of(whose, who)
        now = ledger.timestamp()
    status = consent.status.name.lower()
    if consent.status.name == "GRANTED" and consent.expires_at <= now:
        status = "expired"
    line = f"{status}: {scope_names(consent.scope)}"
    if consent.expires_at:
        line += f", until {_when(consent.expires_at)}"
    stdout().print(line)
