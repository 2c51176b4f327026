"""``vitalchain chain``: a local anvil node with the contracts deployed, or a deployment only."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from vitalchain.cli._common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_RPC,
    BadArgument,
    command_group,
    err,
    fail,
    guard,
    new_file,
    os_refusal,
    parse_http_url,
    read_key,
    stdout,
)

if TYPE_CHECKING:
    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.ledger import Ledger

__all__ = ["chain_app"]

chain_app = command_group(
    "Run a local development chain, or deploy the contracts to a running one."
)

DEFAULT_DEPLOYER = Path("var/chain/deployer.key")

KeyOpt = Annotated[
    Path,
    typer.Option(
        "--key",
        help="Deployer key file (the consent admin); generated and saved 0600 if it does not "
        "exist.",
    ),
]
OutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Where to write deployment.json (the default is where `gateway run` looks).",
    ),
]


def _deployer(path: Path) -> tuple[PrivateKey, bool]:
    """The deployer key from ``path``, or a new one saved there; True when it is new."""
    from vitalchain.node import load_or_create_key

    if path.exists():
        return read_key(path, "--key"), False
    new_file(path, "--key", default=DEFAULT_DEPLOYER)
    try:
        return load_or_create_key(path), True
    except OSError as exc:
        raise os_refusal(
            exc, f"cannot create a key file at {path}", "--key", "not_writable"
        ) from None


def _deploy(rpc_url: str, deployer: PrivateKey) -> Ledger:
    from vitalchain.ledger import Ledger
    from vitalchain.node import rpc_backend

    with (
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        ) as bar,
        guard(f"cannot deploy to {rpc_url}"),
    ):
        bar.add_task(f"deploying the contracts to {rpc_url}", total=None)
        return Ledger.deploy(rpc_backend(rpc_url), deployer)


@chain_app.command("deploy")
def deploy(
    rpc_url: Annotated[
        str, typer.Option("--rpc-url", help="JSON-RPC URL of a running Ethereum node.")
    ] = DEFAULT_RPC,
    out: OutOpt = DEFAULT_DEPLOYMENT,
    key: KeyOpt = DEFAULT_DEPLOYER,
    force: Annotated[bool, typer.Option(help="Replace an existing deployment file.")] = False,
) -> None:
    """Deploy the vitalchain contracts to a running node and write deployment.json.

    The deployer becomes the consent admin (it registers providers).  On anvil's chain ID the
    deployer is funded from anvil's dev account; elsewhere set VITALCHAIN_FUNDER_KEY or fund it.
    """
    rpc_url = parse_http_url(rpc_url, "--rpc-url")
    new_file(
        out,
        "--out",
        default=DEFAULT_DEPLOYMENT,
        overwrite=force,
        exists="gateways may rely on it; pass --force to replace it",
    )
    deployer, new_key = _deployer(key)
    ledger = _deploy(rpc_url, deployer)
    _save_and_print(ledger, rpc_url, out, key, new_key, deployer.address)


def _save_and_print(
    ledger: Ledger, rpc_url: str, out: Path, key: Path, new_key: bool, admin: str
) -> None:
    try:
        ledger.deployment.save(out)
    except OSError as exc:
        fail(f"deployed, but cannot write {out}: {exc.strerror or exc}", why="not_writable")
    table = Table(show_header=False, title="vitalchain contracts deployed", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("chain", f"{rpc_url} (chain ID {ledger.chain_id})")
    for name, address in ledger.deployment.addresses.items():
        table.add_row(name, address)
    table.add_row("consent admin", admin)
    table.add_row("admin key", f"{key}{' (new, 0600)' if new_key else ''}")
    table.add_row("deployment", str(out))
    stdout().print(table)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@chain_app.command("start")
def start(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the node, on 127.0.0.1 only.")
    ] = 8545,
    anvil: Annotated[
        Path | None,
        typer.Option(help="The anvil binary (default: node_modules/.bin/anvil, then PATH)."),
    ] = None,
    out: OutOpt = DEFAULT_DEPLOYMENT,
    key: KeyOpt = DEFAULT_DEPLOYER,
    block_time: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds per block (default: a block per transaction)."),
    ] = None,
) -> None:
    """Start a local anvil node, deploy the contracts, and run until Ctrl-C.

    Binds 127.0.0.1 only, deploys with the deployer key (--key), writes deployment.json
    (--out), then keeps the node in the foreground until Ctrl-C or SIGTERM (there is no
    --detach: open another terminal for the gateway).  The node keeps its state in memory,
    so stopping it forgets the chain; starting again rewrites the deployment file (a gateway
    that served the old chain then needs `gateway run --reset-data`).
    """
    from vitalchain.services.anvil import AnvilError, find_anvil, run_anvil
    from vitalchain.services.ports import accepts, port_free

    if anvil is not None:
        if not anvil.is_file():
            raise BadArgument(f"no file at {anvil}", "--anvil", code="file_missing")
        binary = anvil
    else:
        try:
            binary = find_anvil()
        except AnvilError as exc:
            raise BadArgument(exc.message, "--anvil", code=exc.code) from None
    if not port_free(port):  # before the output's folder is made: a refusal creates nothing
        raise BadArgument(
            f"127.0.0.1:{port} is in use (another node?); choose another --port",
            "--port",
            code="port_in_use",
        )
    new_file(out, "--out", default=DEFAULT_DEPLOYMENT, overwrite=True)  # rewritten each start
    deployer, new_key = _deployer(key)
    out_console = stdout()
    # Stop cleanly (anvil too) on Ctrl-C or `kill`, even if started with SIGINT ignored.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt),
    }
    try:
        with guard("cannot start anvil"), run_anvil(port, block_time, binary) as url:
            ledger = _deploy(url, deployer)
            _save_and_print(ledger, url, out, key, new_key, deployer.address)
            hint = f"--data-dir {out.parent}" if out.name == "deployment.json" else ""
            out_console.print(
                f"[green]chain running at {url}[/green]; Ctrl-C stops it (and forgets it).\n"
                f"Next: vitalchain gateway run --rpc-url {url} {hint}".rstrip(),
            )
            while accepts(port):
                time.sleep(1)
            fail("anvil stopped unexpectedly", why="node_failed")
    except KeyboardInterrupt:
        out_console.print("stopped the chain")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
