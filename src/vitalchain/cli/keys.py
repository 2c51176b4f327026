"""``vitalchain key``: Ethereum keys for patients, providers and admins, kept in 0600 files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitalchain.cli._common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_RPC,
    DeploymentOpt,
    RpcOpt,
    command_group,
    ensure_gas,
    err,
    fail,
    guard,
    new_file,
    open_chain,
    read_key,
    stdout,
)

__all__ = ["key_app"]

key_app = command_group("Create a key file, show its address, publish its public key on chain.")

KeyFileOpt = Annotated[Path, typer.Option("--key", help="File with a hex private key.")]


@key_app.command("new")
def new(
    out: Annotated[Path, typer.Option("--out", help="The key file to create (mode 0600).")],
) -> None:
    """Generate a secp256k1 key, save it (0600, never overwriting) and print its address."""
    from vitalchain.node import load_or_create_key

    # Never overwritten, not even with a flag: a private key replaced is an identity lost.
    new_file(out, "--out", exists="a key file is never overwritten")
    try:
        key = load_or_create_key(out)
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror or type(exc).__name__}", 2, why="not_writable")
    err().print(f"wrote a new key to {out} (mode 0600); its address:")
    typer.echo(key.address)


@key_app.command("address")
def address(key: KeyFileOpt) -> None:
    """Print the address of a key file (the key itself is never shown)."""
    typer.echo(read_key(key).address)


@key_app.command("publish")
def publish(
    key: KeyFileOpt,
    rpc_url: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
) -> None:
    """Publish the key's public key in the on-chain key directory.

    Gateways wrap each block's data key for the patient and the consented providers by these
    published keys: a provider must publish before the blocks it should read are sealed.
    """
    me = read_key(key)
    ledger = open_chain(rpc_url, deployment)
    console = stdout()
    with guard("cannot publish the key"):
        if ledger.has_key(me.address):
            console.print(f"{me.address} has already published its key")
            return
        ensure_gas(ledger, me.address)
        tx = ledger.publish_key(me)
    console.print(
        f"published the public key of {me.address} (block {tx.block_number}, "
        f"tx 0x{tx.tx_hash.hex()})",
    )
